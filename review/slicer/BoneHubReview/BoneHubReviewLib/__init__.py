"""Slicer-free logic of the BoneHubReview module (importable by Slicer and by pytest)."""
