"""Labels of DVS recordings, one module per job.

==================  ================================================================
module              job
==================  ================================================================
``segments``        :class:`Segment`, validation (:func:`check_segments`), the one merge
                    of per-window predictions into segments (:func:`merge_runs`)
``files``           the DVS Gesture CSV, HDF5 ``/labels``, the project sidecar, paths
``recording``       a recording read for labeling, its time range and event rate
``validate``        checking label files, finding label files and labelled recordings
``document``        :class:`LabelDocument`: the editor's model (undo/redo, autosave, recovery)
``suggest``         suggested segments from a recording's activity, classified by a model
``predict``         a classifier run over a recording (the one place labels run a model)
``export``          labelled recordings -> one HDF5 dataset, and reading it back
==================  ================================================================

Import the public names from here (``from dvsapp.core.labels import Segment``).
The package imports nothing above it (``tests/test_layering.py``): events, errors,
gestures and atomic writes, :mod:`dvsapp.core.io` to read recordings, and
:mod:`dvsapp.core.recipe` to make a classifier's input.  It never loads a model:
a classifier is handed in.
"""

from dvsapp.core.labels.document import DocState, Edit, LabelDocument, Recovery
from dvsapp.core.labels.export import (
    DATASET_FORMAT,
    EXPORT_MODES,
    DatasetItem,
    ExportSummary,
    assign_splits,
    dataset_class_names,
    export_dataset,
    read_dataset,
)
from dvsapp.core.labels.files import (
    CSV_HEADER,
    H5_SUFFIXES,
    PROJECT_FORMAT,
    SIDECAR_SUFFIX,
    SavedLabels,
    atomic_write_bytes,
    detect_newline,
    find_labels,
    format_labels_csv,
    is_labels_csv,
    labels_path_for,
    project_class_names,
    read_labels_csv,
    read_labels_h5,
    read_name_list,
    remove_stale_temps,
    resolve_inside,
    saved_labels,
    sidecar_path_for,
    write_labels_csv,
    write_labels_h5,
)
from dvsapp.core.labels.predict import classify_windows, predict_segments
from dvsapp.core.labels.recording import Recording, event_rate, load_recording, scan_time_range
from dvsapp.core.labels.segments import (
    LabelProblem,
    Segment,
    append_run,
    check_segments,
    first_overlap,
    merge_runs,
    segment_at,
    segments_from_array,
    segments_to_array,
    sort_segments,
)
from dvsapp.core.labels.suggest import (
    Suggestions,
    classify_segments,
    suggest_for_recording,
    suggest_segments,
)
from dvsapp.core.labels.validate import (
    RECORDING_SUFFIXES,
    LabelSet,
    check_labels_file,
    expand_label_files,
    expand_recordings,
    load_label_set,
    validate_path,
    validate_paths,
)

__all__ = [
    "CSV_HEADER",
    "DATASET_FORMAT",
    "EXPORT_MODES",
    "H5_SUFFIXES",
    "PROJECT_FORMAT",
    "RECORDING_SUFFIXES",
    "SIDECAR_SUFFIX",
    "DatasetItem",
    "DocState",
    "Edit",
    "ExportSummary",
    "LabelDocument",
    "LabelProblem",
    "LabelSet",
    "Recording",
    "Recovery",
    "SavedLabels",
    "Segment",
    "Suggestions",
    "append_run",
    "assign_splits",
    "atomic_write_bytes",
    "check_labels_file",
    "check_segments",
    "classify_segments",
    "classify_windows",
    "dataset_class_names",
    "detect_newline",
    "event_rate",
    "expand_label_files",
    "expand_recordings",
    "export_dataset",
    "find_labels",
    "first_overlap",
    "format_labels_csv",
    "is_labels_csv",
    "labels_path_for",
    "load_label_set",
    "load_recording",
    "merge_runs",
    "predict_segments",
    "project_class_names",
    "read_dataset",
    "read_labels_csv",
    "read_labels_h5",
    "read_name_list",
    "remove_stale_temps",
    "resolve_inside",
    "saved_labels",
    "scan_time_range",
    "segment_at",
    "segments_from_array",
    "segments_to_array",
    "sidecar_path_for",
    "sort_segments",
    "suggest_for_recording",
    "suggest_segments",
    "validate_path",
    "validate_paths",
    "write_labels_csv",
    "write_labels_h5",
]
