"""The choices the model's constructors accept, in a module light enough for the configuration to read
before TensorFlow loads."""

TORSO_DTYPES = ("float32", "bfloat16")  # what the convolutions and the fc layer compute in
TWO_COLUMN_SCALINGS = ("unit", "literal")  # how beta enters eq. 8 (docs/fidelity.md)
RMSPROP_KERNELS = ("auto", "cpp", "xla")  # how a Hogwild call's RMSProp steps are applied (docs/throughput.md)
