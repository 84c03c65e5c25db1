# CPU image of the project: the `bonehub` command with every dependency of pyproject.toml.
# The Dataflow GPU worker image (CUDA base, Beam boot entrypoint, baked weights) is the "Cloud scale" issue.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /opt/bonehub

COPY pyproject.toml constraints.txt README.md ./
COPY labels/ labels/
COPY dicom_io/ dicom_io/
COPY models/ models/
COPY qc/ qc/
COPY review/ review/
COPY pipeline/ pipeline/
COPY sr_templates/ sr_templates/
RUN pip install -c constraints.txt . \
    && python -m models.torch_compat --install \
    && useradd --create-home --uid 1000 bonehub

COPY sample/ sample/
USER bonehub
ENTRYPOINT ["bonehub"]
CMD ["sample", "--data", "/opt/bonehub/sample/ts_abdomen_3mm", "--out", "/tmp/bonehub-sample"]
