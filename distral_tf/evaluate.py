"""Measures and watches a trained run's policies: ``python -m distral_tf.evaluate --logdir=RUN``.

    python -m distral_tf.evaluate --logdir=runs/kl_2col-two_rooms_small-s0 --episodes=20 \\
        --policy=both --video_dir=videos --json_out=eval.json

Rebuilds the agent from the run's ``config.json``, reads a checkpoint (the newest,
or ``--checkpoint=STEP``) without writing anything into the run directory, and runs
``--episodes`` episodes of every task with the task policies pi_i and/or the
distilled policy pi_0 (sampled, or ``--greedy``). Prints a table per task and
policy: return (mean ± std), episode length and, where the task defines one, the
success rate (the episode reached the goal at least once, or for fetch returned
an object). ``--json_out`` writes the table as JSON; ``--video_dir`` writes an MP4
of each task's first episode per policy and, for the Doom tasks, a top-down map of
its trajectory. ``--suite`` evaluates on another suite with the same observation
and action spaces (pi_0 on new tasks, for instance).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
from absl import flags as absl_flags

from distral_tf.training.run_files import POLICIES
from flags import cli


def define_flags():
    """Defines the command-line flags (only when run as a program, so importing defines none)."""
    absl_flags.DEFINE_string("logdir", None, "Run directory to evaluate (read only).", required=True)
    absl_flags.DEFINE_integer("checkpoint", None, "Agent step of the checkpoint (default: the newest).")
    absl_flags.DEFINE_enum("policy", "both", [*POLICIES, "both"],
                           "Which policies: the task policies pi_i, the distilled policy pi_0, or both.")
    absl_flags.DEFINE_integer("episodes", 10, "Episodes per task and policy.", lower_bound=1)
    absl_flags.DEFINE_bool("greedy", False, "Take the most probable action instead of sampling.")
    absl_flags.DEFINE_string("video_dir", None, "Directory for one MP4 per task and policy (and maps).")
    absl_flags.DEFINE_string("json_out", None, "File to write the results to as JSON.")
    absl_flags.DEFINE_string("suite", None, "Evaluate on this suite instead of the run's own.")
    absl_flags.DEFINE_integer("seed", 0, "Seed of the environments and of the action sampling.", lower_bound=0)


def format_table(rows: list[dict]) -> str:
    """The results as an aligned text table."""
    width = max([len("task")] + [len(r["task"]) for r in rows])
    lines = [f"{'policy':<10} {'task':<{width}}  {'return (mean ± std)':>21}  {'length':>7}  {'success':>7}"]
    for r in rows:
        success = "-" if r["success_rate"] is None else f"{100 * r['success_rate']:.0f}%"
        ret = f"{r['mean_return']:.2f} ± {r['std_return']:.2f}"
        lines.append(f"{r['policy']:<10} {r['task']:<{width}}  {ret:>21}  {r['mean_length']:>7.1f}  {success:>7}")
    return "\n".join(lines)


def evaluate(logdir: str, *, checkpoint: int | None = None, policies=POLICIES, episodes: int = 10,
             greedy: bool = False, video_dir: str | None = None, suite_name: str | None = None,
             seed: int = 0) -> dict:
    """Evaluates the run in ``logdir``; returns the results (also what ``--json_out`` writes)."""
    from distral_tf.envs import make_suite
    from distral_tf.training import trained_run

    # Bad input fails here, before TensorFlow is imported or an environment starts.
    config, meta = trained_run.read_config(logdir)
    run_tasks = tuple(meta.get("task_names") or ())
    trained_run.select_checkpoint(logdir, checkpoint)
    run_suite = make_suite(meta.get("suite", config.suite))
    suite = run_suite if suite_name is None else make_suite(suite_name)
    if suite_name is not None:
        shape, actions = trained_run.run_spaces(meta, run_suite)
        trained_run.check_same_spaces(suite, shape, actions, f"the run in {logdir}")
        if "task" in policies and suite.task_names != run_tasks:
            raise trained_run.RunLoadError(
                f"The run has task policies for {', '.join(run_tasks)} only; evaluate suite {suite.name!r} "
                "with --policy=distilled.")
    from distral_tf.training import policy_runner, videos
    from distral_tf.training.actors import close_quietly

    run = trained_run.load(logdir, checkpoint, suite=run_suite)
    if video_dir:
        os.makedirs(video_dir, exist_ok=True)
    results = {"logdir": logdir, "checkpoint": run.checkpoint, "checkpoint_step": run.step, "algo": config.algo,
               "suite": suite.name, "greedy": greedy, "episodes": episodes, "seed": seed,
               "distilled_policy": run.agent.algorithm.distilled_policy.value, "rows": [], "videos": [], "maps": []}
    for policy in policies:
        runner = policy_runner.PolicyRunner(run.agent, policy)
        envs = []
        try:
            envs = [suite.make_env(i) for i in range(suite.num_tasks)]
            per_task = policy_runner.run_episodes(envs, np.arange(suite.num_tasks), runner, episodes, greedy=greedy,
                                               seed=seed, record=bool(video_dir))
            fps = [env.metadata.get("render_fps", 10) for env in envs]
            goals = [videos.goal_box(env) for env in envs]
        finally:
            for env in envs:
                close_quietly(env)
        for task, (name, outcome) in enumerate(zip(suite.task_names, per_task, strict=True)):
            results["rows"].append({"policy": policy, "task": name, **policy_runner.summarize(outcome)})
            recording = outcome.recording
            if recording is None:
                continue
            path = os.path.join(video_dir, f"{name}_{policy}.mp4")
            videos.write_mp4(path, videos.episode_frames(recording.frames, recording.rewards, name, policy, run.step,
                                                         goals[task]), fps[task])
            results["videos"].append(path)
            if recording.positions is not None and recording.scene is not None:
                path = os.path.join(video_dir, f"{name}_{policy}_map.png")
                from PIL import Image

                Image.fromarray(videos.trajectory_map(recording.scene, recording.positions)).save(path)
                results["maps"].append(path)
    return results


def main(argv):
    cli.refuse_positional(argv)
    from distral_tf.training.tensorflow_setup import configure_tensorflow
    from distral_tf.training.trained_run import RunLoadError
    from distral_tf.training.videos import VideoError

    configure_tensorflow()
    values = absl_flags.FLAGS
    policies = POLICIES if values.policy == "both" else (values.policy,)
    try:
        results = evaluate(values.logdir, checkpoint=values.checkpoint, policies=policies, episodes=values.episodes,
                           greedy=values.greedy, video_dir=values.video_dir, suite_name=values.suite,
                           seed=values.seed)
    except (RunLoadError, VideoError, ValueError, ImportError, OSError) as e:
        sys.exit(f"error: {e}")
    mode = "greedy" if results["greedy"] else "sampled"
    print(f"{results['logdir']}: {results['algo']} at {results['checkpoint_step']:,} agent steps, "
          f"{results['episodes']} {mode} episode(s) per task on {results['suite']}")
    print(format_table(results["rows"]))
    for path in results["videos"] + results["maps"]:
        print(path)
    if values.json_out:
        with open(values.json_out, "w") as f:
            json.dump(results, f, indent=2)
        print(values.json_out)


if __name__ == "__main__":
    define_flags()
    cli.run(main)
