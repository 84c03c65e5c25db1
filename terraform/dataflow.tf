# The flex template spec: lets `gcloud dataflow flex-template run` (or the console) start a job from
# the worker image without a local Python environment. The image carries the template launcher and
# docker/flex_main.py, which turns these parameters into `bonehub run` options (repeatable ones take
# several values separated by ";"). Written only when var.worker_image is set.

locals {
  flex_parameters = [
    {
      name       = "source"
      label      = "Segmentation sources"
      helpText   = "One or more --source specs separated by ';', e.g. totalsegmentator:total;moose:clin_ct_vertebrae?models_dir=/opt/bonehub/weights/moose;baseline"
      isOptional = false
    },
    {
      name       = "out"
      label      = "Output store"
      helpText   = "Where SEGs, SRs and the manifest go: gs://BUCKET/PREFIX or a DICOMweb URL (e.g. the dicomweb_url output)"
      isOptional = false
      regexes    = ["^(gs://|https://).+"]
    },
    {
      name       = "idc_collection"
      label      = "IDC collection"
      helpText   = "IDC collection_id to process, e.g. nlst (give this, idc_series or dicomweb)"
      isOptional = true
    },
    {
      name       = "idc_series"
      label      = "IDC series"
      helpText   = "SeriesInstanceUIDs separated by ';'"
      isOptional = true
    },
    {
      name       = "dicomweb"
      label      = "DICOMweb input"
      helpText   = "DICOMweb URL searched for CT series (QIDO)"
      isOptional = true
    },
    {
      name       = "augment"
      label      = "Augmentations"
      helpText   = "Input augmentations separated by ';', e.g. rotate(0,0,5);noise(20)"
      isOptional = true
    },
    {
      name       = "gpu"
      label      = "GPU type"
      helpText   = "GPU of the segmentation step's workers, e.g. nvidia-l4 (default) or nvidia-tesla-t4"
      isOptional = true
    },
    {
      name       = "gpu_count"
      label      = "GPUs per worker"
      helpText   = "0: no GPU (sources that need none: baseline, precomputed)"
      isOptional = true
      regexes    = ["^[0-9]+$"]
    },
    {
      name       = "gpu_machine_type"
      label      = "GPU worker machine type"
      helpText   = "Machine type matching the GPU: g2-* for L4, n1-* for T4"
      isOptional = true
    },
    {
      name       = "staging"
      label      = "Staging area"
      helpText   = "gs:// prefix where read CTs and label maps wait between the CPU and GPU steps, e.g. gs://CHECKPOINTS_BUCKET/staging (the checkpoints_bucket output)"
      isOptional = false
      regexes    = ["^gs://.+"]
    },
    {
      name       = "manifest"
      label      = "Manifest"
      helpText   = "Manifest parquet (gs://...); default: OUT/manifest.parquet"
      isOptional = true
      regexes    = ["^gs://.+"]
    },
    {
      name       = "qc_dir"
      label      = "QC folder"
      helpText   = "gs:// prefix for the QC tables and report; default: qc/ next to the manifest"
      isOptional = true
      regexes    = ["^gs://.+"]
    },
  ]
}

resource "google_storage_bucket_object" "flex_template" {
  count = var.worker_image == null ? 0 : 1

  bucket       = google_storage_bucket.temp.name
  name         = "templates/${var.name_prefix}-flex-template.json"
  content_type = "application/json"
  content = jsonencode({
    image   = var.worker_image
    sdkInfo = { language = "PYTHON" }
    metadata = {
      name        = "BoneHub bone segmentation"
      description = "CT series -> several segmentation sources -> DICOM SEG, then QC (consensus SEG, QC SR, tables)"
      parameters  = local.flex_parameters
    }
    defaultEnvironment = {
      serviceAccountEmail = google_service_account.worker.email
      tempLocation        = "gs://${google_storage_bucket.temp.name}/temp"
      stagingLocation     = "gs://${google_storage_bucket.temp.name}/staging"
      sdkContainerImage   = var.worker_image
      machineType         = var.worker_machine_type
    }
  })
}
