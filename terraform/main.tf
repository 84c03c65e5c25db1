# BoneHub on Google Cloud: what one project needs to run the pipeline over whole IDC collections.
# Files: storage.tf (buckets), healthcare.tf (DICOM store), registry.tf (worker image repository),
# iam.tf (worker service account, least privilege), dataflow.tf (flex template spec).

locals {
  bucket_prefix = "${var.project_id}-${var.name_prefix}"
  worker_member = "serviceAccount:${google_service_account.worker.email}"
  image_base    = "${var.region}-docker.pkg.dev/${var.project_id}/${google_artifact_registry_repository.worker.repository_id}/bonehub-worker"

  apis = toset([
    "artifactregistry.googleapis.com",
    "cloudresourcemanager.googleapis.com", # data.google_project (the Healthcare service agent's number)
    "compute.googleapis.com",
    "dataflow.googleapis.com",
    "healthcare.googleapis.com",
    "iam.googleapis.com",
    "logging.googleapis.com",
    "monitoring.googleapis.com",
    "pubsub.googleapis.com",
    "storage.googleapis.com",
  ])
}

data "google_project" "this" {
  project_id = var.project_id
}

resource "google_project_service" "apis" {
  for_each = local.apis

  project            = var.project_id
  service            = each.value
  disable_on_destroy = false # other workloads of the project may use the same APIs
}
