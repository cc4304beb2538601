"""I/O shared by the components: TFRecord shards (`tfrecord`) and Arrow batches of examples read in bulk (`example_batches`)."""
