# Three buckets with different lifetimes: Dataflow scratch (staging/temp), outputs (the SEGs, SRs,
# manifests and QC tables a run writes with --out gs://...), and checkpoints (fetched-series cache and
# resumable state). All: uniform bucket-level access, public access prevention enforced, lifecycle rules.

resource "google_storage_bucket" "temp" {
  #checkov:skip=CKV_GCP_62:Object access logging is a project-wide choice: turn on Data Access audit logs for Cloud Storage (README); per-bucket usage logs would need a fourth bucket duplicating them.
  #checkov:skip=CKV_GCP_78:Scratch data (staged packages, temp files) is recreated by every job; object versions would only multiply its cost.
  name                        = "${local.bucket_prefix}-tmp"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets
  labels                      = var.labels

  lifecycle_rule {
    condition {
      age            = var.temp_retention_days
      matches_prefix = ["staging/", "temp/"] # templates/ (the flex template spec) is kept
    }
    action {
      type = "Delete"
    }
  }

  lifecycle_rule {
    condition {
      age = 1
    }
    action {
      type = "AbortIncompleteMultipartUpload"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "outputs" {
  #checkov:skip=CKV_GCP_62:Object access logging is a project-wide choice: turn on Data Access audit logs for Cloud Storage (README); per-bucket usage logs would need a fourth bucket duplicating them.
  name                        = "${local.bucket_prefix}-out"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets
  labels                      = var.labels

  versioning {
    enabled = true # a rerun overwrites a SEG in place (same UIDs): the previous one stays recoverable
  }

  dynamic "lifecycle_rule" {
    for_each = var.outputs_nearline_after_days > 0 ? [var.outputs_nearline_after_days] : []
    content {
      condition {
        age                   = lifecycle_rule.value
        matches_storage_class = ["STANDARD"]
      }
      action {
        type          = "SetStorageClass"
        storage_class = "NEARLINE"
      }
    }
  }

  lifecycle_rule {
    condition {
      days_since_noncurrent_time = var.noncurrent_retention_days
      with_state                 = "ARCHIVED"
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.apis]
}

resource "google_storage_bucket" "checkpoints" {
  #checkov:skip=CKV_GCP_62:Object access logging is a project-wide choice: turn on Data Access audit logs for Cloud Storage (README); per-bucket usage logs would need a fourth bucket duplicating them.
  #checkov:skip=CKV_GCP_78:Checkpoints are a cache (fetched CT series, resumable state) that a rerun rebuilds; versions would only multiply its cost.
  name                        = "${local.bucket_prefix}-ckpt"
  location                    = var.region
  storage_class               = "STANDARD"
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"
  force_destroy               = var.force_destroy_buckets
  labels                      = var.labels

  lifecycle_rule {
    condition {
      age = var.checkpoint_retention_days
    }
    action {
      type = "Delete"
    }
  }

  dynamic "encryption" {
    for_each = var.kms_key_name == null ? [] : [var.kms_key_name]
    content {
      default_kms_key_name = encryption.value
    }
  }

  depends_on = [google_project_service.apis]
}
