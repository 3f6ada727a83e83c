"""Opening a dataset of the project for the analysis commands (which have their own flags)."""


def open_source(dataset, data_dir=None, prepared_dir=None, synthetic_num_train=1000):
    """A `DataSource` for `dataset`: the embedded synthetic one, or a file-based one prepared (once)
    from `data_dir` as training does. Raises `DataError` for bad data."""
    if dataset == "synthetic":
        from semiseg_tf.data import synthetic
        return synthetic.SyntheticSource(num_train=synthetic_num_train, num_val=1)
    from semiseg_tf.data import prepared
    return prepared.build_prepared_source(dataset, data_dir, prepared_dir, n_sup=-1)
