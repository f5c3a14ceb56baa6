"""Device checks for a machine with an NVIDIA GPU: NVML meter, GPU serving, GPU variants, the GPU benchmark."""
