"""MONAI Deploy application: a DICOM FDG-PET/CT study in, DICOM SEG + risk report out.

``python -m hnc_petct.clinic_app -i STUDY_DIR -o OUT [-m MODELS]`` (see docs/clinic_app.md).
``python -m hnc_petct.clinic_app.inspect -i STUDY_DIR -o OUT`` writes what the models would see.
Needs the ``deploy`` extra (monai-deploy-app-sdk, holoscan, highdicom, pydicom).
"""
