# The node image the bundle's manifests run beside Triton (deployment.monitoring.prober_image):
# optimize with only what a node needs (optimize[node]: ONNX Runtime, prometheus-client; no torch).
#   docker build -f deploy/docker/node.Dockerfile -t ghcr.io/optimize-dev/optimize-node:0.1.0 .
# For OpenVINO classes install '.[node-openvino]'; TensorRT classes need NVIDIA's L4T/CUDA base
# image with TensorRT matching the one that built the plans.
FROM python:3.11-slim
COPY pyproject.toml constraints.txt README.md /src/
COPY optimize /src/optimize
RUN pip install --no-cache-dir -c /src/constraints.txt '/src[node]' && rm -rf /src
USER 65534:65534
ENTRYPOINT []
