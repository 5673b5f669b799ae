"""Quarry's GPU endpoint: embeddings, reranking and OCR behind one HTTP service.

It runs as a SageMaker real-time endpoint in the cloud (CUDA) and locally on CPU with the same
bundled models (``quarry gpu-endpoint`` or ``python -m gpu_endpoint``).
"""
