# Stand-in for a broken `amdsmi` (installed by zeus, without the ROCm library it loads): an
# ImportError, which Ray's AMD GPU detection handles. Only put on the path of Ray processes by
# mle_tui.core.cluster.ray_env when the real `import amdsmi` fails with another error.
raise ImportError("amdsmi is installed without libamd_smi.so (no ROCm on this node)")
