"""absl flag definitions of distral_tf's entry points, with validators."""
