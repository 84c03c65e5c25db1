# The worker service account: what Dataflow workers (and the flex template launcher VM) run as.
# Least privilege: the Dataflow worker role on the project, and everything else on the one resource
# it needs: object read/write on the three buckets, DICOM read/write on the one store, image pull
# from the one repository. No primitive roles (owner/editor/viewer).

resource "google_service_account" "worker" {
  account_id   = "${var.name_prefix}-worker"
  display_name = "BoneHub Dataflow worker"
  description  = "Runs BoneHub Dataflow workers and the flex template launcher"

  depends_on = [google_project_service.apis]
}

resource "google_project_iam_member" "worker_dataflow" {
  project = var.project_id
  role    = "roles/dataflow.worker"
  member  = local.worker_member
}

locals {
  worker_buckets = {
    temp        = google_storage_bucket.temp.name
    outputs     = google_storage_bucket.outputs.name
    checkpoints = google_storage_bucket.checkpoints.name
  }
}

# Read, write and overwrite objects (reruns replace SEGs in place); no bucket or IAM administration.
resource "google_storage_bucket_iam_member" "worker_objects" {
  for_each = local.worker_buckets

  bucket = each.value
  role   = "roles/storage.objectUser"
  member = local.worker_member
}

# storage.buckets.get: Beam checks the buckets of temp_location and of gs:// outputs before writing.
resource "google_storage_bucket_iam_member" "worker_bucket_metadata" {
  for_each = local.worker_buckets

  bucket = each.value
  role   = "roles/storage.legacyBucketReader"
  member = local.worker_member
}

resource "google_healthcare_dicom_store_iam_member" "worker_dicom" {
  dicom_store_id = google_healthcare_dicom_store.this.id
  role           = "roles/healthcare.dicomEditor"
  member         = local.worker_member
}

resource "google_artifact_registry_repository_iam_member" "worker_pull" {
  location   = google_artifact_registry_repository.worker.location
  repository = google_artifact_registry_repository.worker.name
  role       = "roles/artifactregistry.reader"
  member     = local.worker_member
}

# People or CI that launch jobs: create Dataflow jobs, run them as the worker account, stage files.
resource "google_project_iam_member" "submitter_dataflow" {
  #checkov:skip=CKV_GCP_49:Creating Dataflow jobs needs roles/dataflow.developer on the project (Dataflow has no narrower scope); who they can run as is limited to the worker account by the serviceAccountUser grant on that account alone. Empty unless var.job_submitters is set.
  for_each = toset(var.job_submitters)

  project = var.project_id
  role    = "roles/dataflow.developer"
  member  = each.value
}

resource "google_service_account_iam_member" "submitter_act_as_worker" {
  for_each = toset(var.job_submitters)

  service_account_id = google_service_account.worker.name
  role               = "roles/iam.serviceAccountUser"
  member             = each.value
}

resource "google_storage_bucket_iam_member" "submitter_staging" {
  for_each = toset(var.job_submitters)

  bucket = google_storage_bucket.temp.name
  role   = "roles/storage.objectUser"
  member = each.value
}
