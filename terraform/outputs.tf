output "temp_location" {
  description = "Dataflow --temp_location (objects under it are deleted after var.temp_retention_days)."
  value       = "gs://${google_storage_bucket.temp.name}/temp"
}

output "staging_location" {
  description = "Dataflow --staging_location."
  value       = "gs://${google_storage_bucket.temp.name}/staging"
}

output "outputs_bucket" {
  description = "Bucket for --out gs://BUCKET/PREFIX (versioned; Nearline after var.outputs_nearline_after_days)."
  value       = google_storage_bucket.outputs.name
}

output "checkpoints_bucket" {
  description = "Bucket for caches and resumable state (objects deleted after var.checkpoint_retention_days)."
  value       = google_storage_bucket.checkpoints.name
}

output "worker_service_account" {
  description = "Email of the worker service account: --service_account_email for Dataflow jobs."
  value       = google_service_account.worker.email
}

output "docker_repository" {
  description = "Artifact Registry Docker repository host/path to push the worker image to."
  value       = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.worker.repository_id}"
}

output "worker_image_name" {
  description = "Suggested worker image name (add :TAG); pass the pushed URI as var.worker_image and --sdk_container_image."
  value       = local.image_base
}

output "dicom_store_id" {
  description = "Full resource name of the Healthcare DICOM store."
  value       = google_healthcare_dicom_store.this.id
}

output "dicomweb_url" {
  description = "DICOMweb base URL of the DICOM store (for --out or --dicomweb, OHIF and 3D Slicer)."
  value       = "https://healthcare.googleapis.com/v1/${google_healthcare_dicom_store.this.id}/dicomWeb"
}

output "dicom_notification_topic" {
  description = "Pub/Sub topic notified for every instance stored in the DICOM store (null unless var.dicom_store_notifications)."
  value       = var.dicom_store_notifications ? google_pubsub_topic.dicom[0].id : null
}

output "flex_template_path" {
  description = "gs:// path of the flex template spec for `gcloud dataflow flex-template run` (null unless var.worker_image is set)."
  value       = var.worker_image == null ? null : "gs://${google_storage_bucket.temp.name}/${google_storage_bucket_object.flex_template[0].name}"
}
