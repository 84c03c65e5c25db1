# A Healthcare API dataset and DICOM store: a DICOMweb target for the SEGs and SRs (--out DICOMweb URL)
# that viewers (OHIF, 3D Slicer) open directly. Optional Pub/Sub notification on every stored instance.

resource "google_healthcare_dataset" "this" {
  name     = var.name_prefix
  location = var.region

  depends_on = [google_project_service.apis]
}

resource "google_healthcare_dicom_store" "this" {
  name    = "${var.name_prefix}-dicom"
  dataset = google_healthcare_dataset.this.id
  labels  = var.labels

  dynamic "notification_config" {
    for_each = var.dicom_store_notifications ? [google_pubsub_topic.dicom[0].id] : []
    content {
      pubsub_topic = notification_config.value
    }
  }

  depends_on = [google_pubsub_topic_iam_member.healthcare_publisher]
}

resource "google_pubsub_topic" "dicom" {
  count = var.dicom_store_notifications ? 1 : 0

  name         = "${var.name_prefix}-dicom-stored"
  labels       = var.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_project_service.apis]
}

# The Healthcare service agent publishes the notifications.
resource "google_pubsub_topic_iam_member" "healthcare_publisher" {
  count = var.dicom_store_notifications ? 1 : 0

  topic  = google_pubsub_topic.dicom[0].id
  role   = "roles/pubsub.publisher"
  member = "serviceAccount:service-${data.google_project.this.number}@gcp-sa-healthcare.iam.gserviceaccount.com"
}
