"""The image viewer page: a Cornerstone3D bundle (built from viewer/ into static/viewer/) reading DICOMweb."""
