# Docker repository for the worker image (Dockerfile; docker/README.md builds and pushes it).

resource "google_artifact_registry_repository" "worker" {
  location      = var.region
  repository_id = var.name_prefix
  description   = "BoneHub worker images (Dataflow custom containers)"
  format        = "DOCKER"
  kms_key_name  = var.kms_key_name
  labels        = var.labels

  cleanup_policies {
    id     = "delete-untagged-after-30-days"
    action = "DELETE"
    condition {
      tag_state  = "UNTAGGED"
      older_than = "2592000s"
    }
  }

  depends_on = [google_project_service.apis]
}
