"""The copied tests tied to the app they were copied from, for `scripts/new_app.py` (`make
new-app`): by source app, each test's name and what of the source it asserts on. Plain data, no
import: the script runs on the system's Python, before any venv."""

# The copied tests that assert on what the source app has (its model's layers, sizes or ops, its
# data, metrics, flags or task), with what: a copy whose model or data differ fails them, and
# they are the ones to rewrite. Every other test of the source's files holds for any model
# (tests/test_new_app.py checks both: every name here exists, and a copy with another model
# fails none of the others).
TIED_TESTS: dict[str, dict[str, str]] = {
    "regression_tape": {
        "test_custom_scalars_layout_is_written_once_and_charts_the_run": "train.py's charts",
        "test_op_graph_is_the_whole_train_step": "the model's ops (MatMul, Relu) and the MSE's",
        "test_conceptual_graph_and_model_summary": "the model's layer names and parameter count",
        "test_loss_gradient_norms_and_eval_metrics_are_finite": "the model's layer names and "
        "variable count",
        "test_it_learns_the_function_down_to_near_the_noise": "the data's function and noise",
        "test_data_is_reproducible_and_its_references_are_right": "data.py",
        "test_debugger_names_the_op_that_first_overflowed_and_the_error_points_at_it": "the MSE's "
        "Square op overflowing first, at learning rate 1e10",
        "test_a_short_run_from_the_command_line": "the dataset's description",
        "test_bad_flags_fail_in_one_line": "the --noise_std flag",
        "test_an_absurd_learning_rate_stops_at_the_first_non_finite_step": "the model diverging "
        "at step 2 with learning rate 1e10",
    },
    "mnist_mlp": {
        "test_op_graph_is_the_whole_train_step": "the model's ops and layer names",
        "test_conceptual_graph_and_model_summary": "the model's layer names, sizes and parameter "
        "count",
        "test_scalars_are_finite_and_land_on_loop_boundaries": "the task's metrics (accuracy)",
        "test_histograms_and_returned_metrics": "the model's variables and the task's metrics",
        "test_loops_end_on_multiples_of_steps_per_loop": "data.py's bundled sample",
        "test_a_single_step_run_still_logs_and_evaluates": "data.py's bundled sample",
        "test_it_learns_real_digits_on_the_bundled_sample": "the model's accuracy on the digits",
        "test_full_mnist_through_tfds_under_mock_data": "data.py's MNIST loading",
        "test_auto_offline_chooses_the_sample_and_says_so": "data.py's --dataset=auto",
        "test_auto_uses_prepared_mnist_without_probing_the_network": "data.py's --dataset=auto",
        "test_explicit_mnist_offline_fails_fast_with_a_hint": "data.py's MNIST loading",
        "test_download_probe_against_local_sockets": "data.py's download probe",
        "test_bundled_sample_is_real_balanced_mnist": "the bundled MNIST sample",
        "test_preprocess_flattens_a_split_of_either_image_shape": "data.py's preprocessing",
        "test_profile_captures_the_second_loop_and_says_where": "data.py's bundled sample",
        "test_jit_compile_trains_and_still_logs_the_step_graph": "the model's ops and the data",
        "test_gradient_histograms_and_norm_at_every_eval_charted_by_the_custom_scalars": "the "
        "model's layer names and sizes, train.py's charts",
        "test_pr_curve_per_digit_misclassified_digits_and_confusion_matrix_at_every_eval": "the "
        "task's ten digits and visuals.py",
        "test_misclassified_grid_captions_only_the_wrong_digits": "visuals.py's digit pictures",
        "test_confusion_matrix_shades_each_cell_by_its_share_of_the_row": "visuals.py's pictures",
        "test_misclassified_grid_is_pillows_drawing_pixel_for_pixel": "visuals.py's pictures",
        "test_confusion_matrix_cells_each_show_their_count_as_pillow_writes_it_alone": (
            "visuals.py's pictures"
        ),
        "test_captions_of_the_misclassified_grid_tell_their_digits_apart": "visuals.py's captions",
        "test_projector_gets_the_hidden_layer_of_eval_digits_with_labels_and_sprite": "the "
        "model's hidden layer and the digits",
        "test_each_eval_draws_its_own_pictures_and_the_projector_holds_the_latest": "visuals.py "
        "and the digits",
        "test_a_probe_started_before_tensorflow_is_the_one_the_data_loader_waits_for": "data.py's "
        "download probe",
        "test_main_probes_the_download_host_before_tensorflow_only_for_auto": "main.py's probe",
        "test_a_short_run_from_the_command_line": "the --dataset flag and the dataset's "
        "description",
        "test_bad_flags_fail_in_one_line_before_tensorflow_loads": "the --dataset flag",
        "test_logdir_that_is_a_file": "the --dataset flag",
        "test_rerunning_a_finished_run_says_so_and_touches_nothing": "the --dataset flag",
        "test_another_model_in_a_finished_logdir_is_refused_and_touches_nothing": "the "
        "--hidden_units flag",
    },
    "vae_timeseries": {
        "test_custom_scalars_layout_is_written_once_and_charts_the_run": "train.py's charts",
        "test_op_graph_is_the_whole_vae_step": "the model's ops (convolutions, sampling)",
        "test_encoder_and_decoder_graphs_and_summaries": "the two models' layer names",
        "test_scalars_are_finite_on_the_boundaries_and_kl_is_positive": "the task's ELBO terms",
        "test_beta_warms_up_linearly_then_stays_at_one": "the task's KL warm-up",
        "test_latent_histograms_and_reconstruction_images": "the latent and images.py",
        "test_projector_gets_the_eval_windows_latent_means": "the latent and the windows",
        "test_the_elbo_improves": "the task's ELBO on the synthetic series",
        "test_csv_with_header_and_time_column_trains": "data.py's CSV reading",
        "test_standardization_uses_the_training_part_only": "data.py's standardization",
        "test_bad_csvs_fail_with_one_line_naming_file_and_place": "data.py's CSV checks",
        "test_a_missing_csv_is_named": "data.py's CSV checks",
        "test_heatmap_colors": "images.py",
        "test_jit_compile_and_profile_come_with_the_shared_loop": "the model's settings and ops",
        "test_a_short_run_from_the_command_line": "the data's flags and description",
        "test_bad_flags_fail_in_one_line": "the app's own flags",
        "test_a_malformed_csv_fails_in_one_line_before_the_logdir_is_touched": "the --data_path "
        "flag",
        "test_a_missing_csv_fails_in_one_line": "the --data_path flag",
    },
    "conditional_dropout": {
        "test_custom_scalars_layout_is_written_once_and_charts_the_run": "train.py's charts",
        "test_pr_curve_of_the_eval_set_at_every_eval": "the task's binary labels",
        "test_train_and_inference_graphs_are_two_tags": "train.py's inference graph",
        "test_train_graph_holds_a_real_conditional_around_dropout": "the model's dropout",
        "test_inference_graph_has_no_dropout_random_or_conditional_ops": "the model's dropout",
        "test_the_switch_flips_at_its_step_without_retracing": "the model's dropout switch",
        "test_conceptual_graph_shows_the_custom_layers": "the model's layers",
        "test_inference_is_deterministic_and_training_is_stochastic": "the model's dropout",
        "test_switching_off_makes_training_mode_deterministic_without_retrace": "the model's "
        "dropout switch",
        "test_the_switch_is_saved_with_the_model": "the model's dropout switch",
        "test_the_popular_advice_fails_on_keras_3": "model.py's dropout layer",
        "test_dropout_makes_the_overfitting_smaller": "the model and the data",
        "test_the_gradient_summaries_do_not_change_the_training": "the dropout switch's setting",
        "test_a_short_run_with_the_runtime_switch": "the dropout switch's flag",
        "test_bad_flags_fail_in_one_line": "the dropout flags",
    },
}
