/**
 * OHIF v3 (verified with @ohif/app 3.13.2) configuration for an Orthanc DICOMweb store.
 *
 * The DICOMweb roots are this page's own origin + /dicom-web: review/ohif/serve.py (or any reverse
 * proxy) serves OHIF and forwards /dicom-web to Orthanc, because Orthanc 1.10 sends no CORS headers.
 * Served by serve.py in place of the app-config.js in OHIF's dist/. Options are those of OHIF's
 * DICOMweb data source (docs.ohif.org, configuration > data sources > DICOMweb).
 */
const dicomWebRoot = `${window.location.origin}/dicom-web`;

window.config = {
  name: 'bonehub/orthanc',
  routerBasename: '/',
  extensions: [],
  modes: [],
  customizationService: {},
  showStudyList: true,
  // the page is served cross-origin isolated (COOP/COEP), so SharedArrayBuffer works and no warning is due
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
        // Orthanc's QIDO answers its default fields only and matches `*` wildcards, not fuzzy names
        qidoSupportsIncludeField: false,
        supportsWildcard: true,
        supportsFuzzyMatching: false,
        supportsReject: false,
        imageRendering: 'wadors',
        // thumbnails drawn from WADO-RS frames by the viewer itself: works for CT; SEG/SR get an icon
        thumbnailRendering: 'wadors',
        // series metadata fetched when a series is opened, not the whole study up front
        enableStudyLazyLoad: true,
        // ask for the stored transfer syntax (our SEGs are RLE Lossless): no transcoding in Orthanc
        acceptHeader: ['multipart/related; type=application/octet-stream; transfer-syntax=*'],
        omitQuotationForMultipartRequest: true,
        // Orthanc (DICOMweb plugin 1.7) answers bulk data and frames as multipart/related
        singlepart: 'video',
        // Orthanc writes absolute BulkDataURIs built from the Forwarded header that serve.py sends,
        // so they point back through the proxy; relative ones would resolve against the series
        bulkDataURI: {
          enabled: true,
          relativeResolution: 'series',
        },
        dicomUploadEnabled: false,
      },
    },
  ],
};
