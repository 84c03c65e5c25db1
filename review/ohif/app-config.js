/**
 * OHIF v3 configuration for an Orthanc DICOMweb store (verified: @ohif/app 3.13.2, Orthanc 1.10.1 with
 * its DICOMweb plugin 1.7, by tests/stores/test_ohif_viewer.py).
 *
 * The DICOMweb roots are this page's own origin + /dicom-web: review/ohif/serve.py (or any reverse proxy)
 * serves OHIF and forwards /dicom-web to Orthanc, because Orthanc 1.10 sends no CORS headers. serve.py
 * serves this file in place of the app-config.js in OHIF's dist/. The options are those of OHIF's
 * DICOMweb data source (docs.ohif.org: Configuration > Data Sources > DICOMweb).
 */
const dicomWebRoot = `${window.location.origin}/dicom-web`;

window.config = {
  name: 'bonehub/orthanc',
  routerBasename: '/',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  // serve.py sends COOP/COEP, so the page is cross-origin isolated and this warning stays silent
  showWarningMessageForCrossOrigin: true,
  showCPUFallbackMessage: true,
  showLoadingIndicator: true,
  strictZSpacingForVolumeViewport: true,
  maxNumberOfWebWorkers: 3,
  maxNumRequests: { interaction: 100, thumbnail: 5, prefetch: 25 },
  showErrorDetails: 'always',
  defaultDataSourceName: 'orthanc',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'orthanc',
      configuration: {
        friendlyName: 'Orthanc DICOMweb (BoneHub)',
        name: 'orthanc',
        qidoRoot: dicomWebRoot,
        wadoRoot: dicomWebRoot,
        wadoUriRoot: dicomWebRoot,
        // QIDO: the study list needs only Orthanc's default attributes; Orthanc matches `*` wildcards, not fuzzy names
        qidoSupportsIncludeField: false,
        supportsWildcard: true,
        supportsFuzzyMatching: false,
        supportsReject: false,
        // images as WADO-RS frames; thumbnails drawn from frames by OHIF itself (SEG/SR series get no picture)
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        // series metadata is fetched when a series is displayed, not the whole study up front
        enableStudyLazyLoad: true,
        // frames in their stored transfer syntax (our LABELMAP SEGs are RLE Lossless): OHIF decodes them
        acceptHeader: ['multipart/related; type=application/octet-stream; transfer-syntax=*'],
        omitQuotationForMultipartRequest: true,
        // no `singlepart`: the DICOMweb plugin 1.7 answers bulk data only as multipart/related
        // (a single-part Accept gets HTTP 400), so every type is fetched multipart
        // Orthanc's BulkDataURIs are absolute, built from the Forwarded header serve.py sends, so they lead
        // back through the proxy; a relative one would be resolved against its series
        bulkDataURI: {
          enabled: true,
          relativeResolution: 'series',
        },
        dicomUploadEnabled: false,
      },
    },
  ],
};
