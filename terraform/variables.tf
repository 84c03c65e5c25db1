variable "project_id" {
  description = "Google Cloud project that holds everything (must exist, with billing enabled)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{4,28}[a-z0-9]$", var.project_id))
    error_message = "project_id must be a Google Cloud project ID: 6-30 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "region" {
  description = "Region of the Dataflow jobs, the buckets, the Artifact Registry repository and the Healthcare dataset (one region keeps data transfer free). IDC's public buckets are in the US, so a US region avoids cross-continent egress."
  type        = string
  default     = "us-central1"

  validation {
    condition     = can(regex("^[a-z]+-[a-z]+[0-9]+$", var.region))
    error_message = "region must be a Google Cloud region name such as us-central1."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name; bucket names add the project ID to be globally unique."
  type        = string
  default     = "bonehub"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,18}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 3-20 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "labels" {
  description = "Labels put on every resource that takes labels (cost attribution)."
  type        = map(string)
  default     = { app = "bonehub" }
}

variable "temp_retention_days" {
  description = "Days after which objects in the Dataflow staging/temp bucket are deleted (staged packages, temp files, flex template spec is rewritten by apply)."
  type        = number
  default     = 14

  validation {
    condition     = var.temp_retention_days >= 1
    error_message = "temp_retention_days must be at least 1."
  }
}

variable "checkpoint_retention_days" {
  description = "Days after which objects in the checkpoint bucket (Stage 1's staged CTs and label maps that a failed run left for its rerun) are deleted."
  type        = number
  default     = 30

  validation {
    condition     = var.checkpoint_retention_days >= 1
    error_message = "checkpoint_retention_days must be at least 1."
  }
}

variable "outputs_nearline_after_days" {
  description = "Days after which output objects (SEGs, SRs, manifests, QC tables) move to the Nearline storage class; 0 keeps them in Standard."
  type        = number
  default     = 90

  validation {
    condition     = var.outputs_nearline_after_days >= 0
    error_message = "outputs_nearline_after_days must be 0 (off) or more."
  }
}

variable "noncurrent_retention_days" {
  description = "Days a replaced or deleted object version is kept in a versioned bucket before it is removed (reruns overwrite outputs in place)."
  type        = number
  default     = 30

  validation {
    condition     = var.noncurrent_retention_days >= 1
    error_message = "noncurrent_retention_days must be at least 1."
  }
}

variable "force_destroy_buckets" {
  description = "Let `terraform destroy` delete buckets that still hold objects. Leave false for real data."
  type        = bool
  default     = false
}

variable "dicom_store_notifications" {
  description = "Create a Pub/Sub topic that the DICOM store notifies on every stored instance (for event-driven QC or review)."
  type        = bool
  default     = false
}

variable "kms_key_name" {
  description = "Cloud KMS key (projects/P/locations/L/keyRings/R/cryptoKeys/K) for customer-managed encryption of the buckets, the Pub/Sub topic and the Artifact Registry repository; null keeps Google-managed encryption. The service agents of Cloud Storage, Pub/Sub and Artifact Registry need roles/cloudkms.cryptoKeyEncrypterDecrypter on it."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_name == null || can(regex("^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$", var.kms_key_name))
    error_message = "kms_key_name must be null or projects/P/locations/L/keyRings/R/cryptoKeys/K."
  }
}

variable "worker_image" {
  description = "Full URI of the pushed worker image (REGION-docker.pkg.dev/PROJECT/REPO/bonehub-worker:TAG or @sha256:...). When set, the flex template spec pointing at it is written to the temp bucket; null skips the template."
  type        = string
  default     = null

  validation {
    condition     = var.worker_image == null || can(regex("^[a-z0-9.-]+(:[0-9]+)?/[^ ]+[:@][^ ]+$", var.worker_image))
    error_message = "worker_image must be a full image URI with a tag or digest, e.g. us-central1-docker.pkg.dev/my-project/bonehub/bonehub-worker:2026-11-30."
  }
}

variable "worker_machine_type" {
  description = "Machine type the flex template gives Dataflow workers by default (the CPU steps); the GPU step's machine comes from bonehub's --gpu-machine-type (template parameter gpu_machine_type)."
  type        = string
  default     = "n1-standard-4"
}

variable "job_submitters" {
  description = "Members (user:..., group:..., serviceAccount:...) allowed to launch jobs: they get roles/dataflow.developer on the project and may act as the worker service account."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for m in var.job_submitters : can(regex("^(user|group|serviceAccount|domain):", m))])
    error_message = "Each job_submitters entry must start with user:, group:, serviceAccount: or domain:."
  }
}
