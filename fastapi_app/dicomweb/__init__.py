"""DICOMweb (PS3.18): QIDO-RS matching, WADO-RS files and frames, the DICOM JSON model, media negotiation."""
