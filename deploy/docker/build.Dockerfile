# The build image the scheduled rebuild jobs run (`optimize schedule --image`): optimize with the
# build libraries (optimize[build]: ONNX, ONNX Runtime, OpenVINO, MLflow, torch).
#   docker build -f deploy/docker/build.Dockerfile -t ghcr.io/optimize-dev/optimize-build:0.1.0 .
# x86-64 TensorRT classes add the TensorRT wheels; the GPU driver comes from the node through the
# nvidia runtime class. Their TensorRT must be the one the class's Triton serves with (a plan
# loads on no other; Triton's release notes name each release's): pin `tensorrt==` to it in
# constraints.txt for that image.
#   docker build -f deploy/docker/build.Dockerfile --build-arg EXTRAS=build,tensorrt \
#     -t ghcr.io/optimize-dev/optimize-build:0.1.0-tensorrt .
# Jetson classes build on NVIDIA's JetPack image for the nodes' L4T release, whose TensorRT is the
# nodes' own (it must provide python3 and pip):
#   docker build -f deploy/docker/build.Dockerfile --build-arg BASE=nvcr.io/nvidia/l4t-jetpack:r36.4.0 ...
# Write one schedule per image into one folder (`optimize schedule ... --image IMG --out DIR`):
# its kustomization.yaml lists them all.
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG EXTRAS=build
COPY pyproject.toml constraints.txt README.md /src/
COPY optimize /src/optimize
RUN pip install --no-cache-dir -c /src/constraints.txt "/src[${EXTRAS}]" && rm -rf /src
# The rebuild writes only to its artifacts folder (an emptyDir) and caches under HOME.
ENV HOME=/tmp
USER 65534:65534
ENTRYPOINT []
