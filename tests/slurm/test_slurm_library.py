"""The Slurm library's pure parts, without a cluster: notations, limits, the batch script and sbatch's
command line, and strict reading of Slurm's outputs (in the shapes Slurm 22.05 prints, as seen in
test_slurm_jobs.py against the real one)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import msgspec
import pytest

from ssd.kernels.slurm import (
    JobSpec,
    JobStatus,
    SlurmCommands,
    SlurmConfig,
    SlurmError,
    SlurmLimitError,
    SlurmOutputError,
    SlurmRequest,
    SlurmUnavailable,
    batch_script,
    kernel_state,
    resolve,
)
from ssd.kernels.slurm.commands import Completed
from ssd.kernels.slurm.query import parse_sacct, parse_squeue, parse_squeue_jobs
from ssd.kernels.slurm.submit import parse_job_id, sbatch_invocation
from ssd.kernels.slurm.units import format_duration, parse_duration, parse_memory

COMMANDS = SlurmCommands(sbatch="/usr/bin/sbatch", squeue="/usr/bin/squeue", scancel="/usr/bin/scancel", sacct=None)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 5400), ("1:30", 90), ("1:30:00", 5400), ("2-12", 216000), ("2-12:30", 217800), ("0-0:0:59", 59)],
)
def test_slurm_times_read_as_sbatch_reads_them(text: str, seconds: int) -> None:
    """Minutes alone, M:S, H:M:S and the day forms; written back as [D-]HH:MM:SS."""
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "soon", "1:2:3:4", "-5", "1.5", "1-"])
def test_other_times_are_refused(text: str) -> None:
    """Anything else is a ValueError naming the accepted forms."""
    with pytest.raises(ValueError, match="not a Slurm time"):
        parse_duration(text)


def test_memory_sizes_are_mebibytes() -> None:
    """No unit means MiB, as for sbatch --mem; K rounds up to 1 MiB; fractions are refused."""
    assert [parse_memory(t) for t in ("4096", "512M", "16G", "1T", "100K", "4g")] == [4096, 512, 16384, 2**20, 1, 4096]
    with pytest.raises(ValueError, match="not a memory size"):
        parse_memory("1.5G")


def test_defaults_fill_what_the_user_left_out() -> None:
    """An empty request gets the host's defaults; Slurm's own default memory and partition stay Slurm's."""
    resources = resolve(SlurmRequest(), SlurmConfig(enabled=True, default_time="30", default_cpus=2))
    assert (resources.partition, resources.time, resources.cpus, resources.mem_mib, resources.gpus) == (
        None,
        "00:30:00",
        2,
        None,
        0,
    )


def test_a_disabled_host_refuses_every_request() -> None:
    """Without [slurm] enabled there is no Slurm placement at all, whatever is asked."""
    with pytest.raises(SlurmUnavailable, match="enabled = false"):
        resolve(SlurmRequest(), SlurmConfig())


@pytest.mark.parametrize(
    ("request_", "named"),
    [
        (SlurmRequest(time="0:30"), "under Slurm's smallest limit"),
        (SlurmRequest(cpus=0), "at least one CPU"),
        (SlurmRequest(mem="0"), "Slurm reads 0 as the whole node"),
        (SlurmRequest(partition="-x"), "not a valid partition name"),
        (SlurmRequest(gpus=-1), "negative"),
    ],
)
def test_nonsense_is_refused_even_without_limits(request_: SlurmRequest, named: str) -> None:
    """Values Slurm would read as something else are refused with the reason."""
    with pytest.raises(SlurmLimitError, match=named):
        resolve(request_, SlurmConfig(enabled=True, max_gpus=4))


@pytest.mark.parametrize(
    ("section", "named"),
    [({"max_time": "soon"}, "slurm.max_time"), ({"default_mem": "lots"}, "slurm.default_mem"), ({"cpus": 1}, "cpus")],
)
def test_a_bad_slurm_section_is_refused_naming_the_key(section: dict[str, object], named: str) -> None:
    """[slurm] is strict as every section of the configuration: bad notations and unknown keys are named."""
    with pytest.raises(msgspec.ValidationError, match=named):
        msgspec.convert(section, SlurmConfig)


def test_the_batch_script_passes_every_word_unchanged(tmp_path: Path) -> None:
    """Quoting: what the shell of the batch script executes is exactly the command given."""
    words = ["/usr/bin/printf", "%s\\n", "$(id)", "it's", "a; b", "*", "`x`", ""]
    script = tmp_path / "job.sh"
    script.write_text(batch_script(words))
    done = subprocess.run(["/bin/sh", str(script)], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert done.stdout.split("\n")[:-1] == words[2:]


def test_a_command_needs_an_absolute_path() -> None:
    """The node has no PATH of ssd's: a bare name is refused."""
    with pytest.raises(SlurmError, match="absolute path"):
        batch_script(["python", "-c", "1"])


def _spec(tmp_path: Path, **changes: object) -> JobSpec:
    resources = resolve(SlurmRequest(partition="debug", mem="2G", gpus=1), SlurmConfig(enabled=True, max_gpus=1))
    fields: dict[str, object] = {
        "command": ["/bin/true"],
        "resources": resources,
        "workdir": tmp_path,
        "output": tmp_path / "kernel.out",
        "environment": {"SSD_MARK": "1"},
        **changes,
    }
    return JobSpec(**fields)  # type: ignore[arg-type]


def test_sbatch_gets_each_option_and_only_the_given_environment(tmp_path: Path) -> None:
    """sbatch --parsable with every resource; its environment is PATH, SLURM_CONF and the given variables."""
    commands = dataclasses.replace(COMMANDS, conf="/etc/slurm/test.conf")
    invocation = sbatch_invocation(_spec(tmp_path), commands)
    assert invocation.argv[:2] == ["/usr/bin/sbatch", "--parsable"]
    for option in ("--partition=debug", "--mem=2048M", "--gpus=1", "--time=01:00:00", "--cpus-per-task=1"):
        assert option in invocation.argv
    assert f"--output={tmp_path / 'kernel.out'}" in invocation.argv
    assert f"--chdir={tmp_path}" in invocation.argv
    assert set(invocation.env) == {"PATH", "SLURM_CONF", "SSD_MARK"}
    assert invocation.stdin == "#!/bin/sh\nexec /bin/true\n"


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"environment": {"SBATCH_PARTITION": "x"}}, "SBATCH_PARTITION"),
        ({"environment": {"SLURM_CONF": "/tmp/x"}}, "SLURM_CONF"),
        ({"environment": {"A=B": "x"}}, "A=B"),
        ({"output": Path("/nonexistent/kernel.out")}, "not in a folder you can write"),
        ({"output_name": "k-%j.out"}, "which Slurm would expand"),
        ({"workdir": Path("/nonexistent")}, "not a folder you can enter"),
        ({"job_name": "a b"}, "job name"),
    ],
)
def test_a_spec_slurm_would_misread_is_refused(tmp_path: Path, changes: dict[str, object], named: str) -> None:
    """Variables that would steer sbatch, unusable folders, % in the output name: refused, named."""
    if "output_name" in changes:
        changes = {"output": tmp_path / str(changes.pop("output_name"))}
    with pytest.raises(SlurmError, match=named):
        sbatch_invocation(_spec(tmp_path, **changes), COMMANDS)


def _done(stdout: str, returncode: int = 0, stderr: str = "") -> Completed:
    return Completed(["slurm-command"], returncode, stdout, stderr)


def test_sbatch_parsable_output_is_read_strictly() -> None:
    """ID or ID;CLUSTER is a job id; a refusal keeps sbatch's words; anything else is slurm_output."""
    assert parse_job_id(_done("17\n")) == 17
    assert parse_job_id(_done("17;ssdtest\n")) == 17
    with pytest.raises(SlurmError, match="Invalid partition name"):
        parse_job_id(_done("", 1, "sbatch: error: Batch job submission failed: Invalid partition name specified\n"))
    for surprise in ("Submitted batch job 17\n", "17\n18\n", ""):
        with pytest.raises(SlurmOutputError):
            parse_job_id(_done(surprise))


def test_squeue_lines_are_read_strictly() -> None:
    """A pending line has no node; a job past its limit has INVALID time left; other shapes are slurm_output."""
    pending = parse_squeue(_done("7|PENDING|Resources||debug|1:00|1:00\n"), 7)
    assert pending == JobStatus(7, "PENDING", "Resources", None, "debug", 60, 60)
    ended = parse_squeue(_done("7|TIMEOUT|TimeLimit|ssd-node|debug|INVALID|1:00\n"), 7)
    assert ended is not None
    assert (ended.node, ended.time_left) == ("ssd-node", None)
    assert parse_squeue(_done("", 1, "slurm_load_jobs error: Invalid job id specified\n"), 7) is None
    for surprise in ("8|RUNNING|None|n|debug|1:00|1:00", "7|RUNNING|None|n|debug|1:00", "7|running|None|n|p|1:00|1:00"):
        with pytest.raises(SlurmOutputError):
            parse_squeue(_done(surprise + "\n"), 7)
    with pytest.raises(SlurmError, match="Unable to contact"):
        parse_squeue(_done("", 1, "slurm_load_jobs error: Unable to contact slurm controller\n"), 7)


def test_one_squeue_answers_for_several_jobs() -> None:
    """Each listed job by its id, a forgotten one absent; a job not asked for, or listed twice, is slurm_output."""
    both = "7|RUNNING|None|n|debug|1:00|1:00\n9|PENDING|Priority||debug|1:00|1:00\n"
    found = parse_squeue_jobs(_done(both), [7, 8, 9])
    assert sorted(found) == [7, 9]
    assert (found[7].state, found[9].reason) == ("RUNNING", "Priority")
    for surprise in (both, "7|RUNNING|None|n|debug|1:00|1:00\n" * 2):
        with pytest.raises(SlurmOutputError):
            parse_squeue_jobs(_done(surprise), [7, 8])


def test_sacct_tells_why_a_forgotten_job_ended() -> None:
    """sacct's State may carry who cancelled; the last line (latest run) counts; accounting off is no answer."""
    record = parse_sacct(_done("7|CANCELLED by 1013|None|None assigned|debug|01:00:00\n"), 7)
    assert record == JobStatus(7, "CANCELLED", "None", None, "debug", None, 3600)
    assert parse_sacct(_done("", 1, "Slurm accounting storage is disabled\n"), 7) is None


@pytest.mark.parametrize(
    ("state", "reason", "phase", "final"),
    [
        ("PENDING", "Priority", "queued", False),
        ("SUSPENDED", "None", "queued", False),
        ("CONFIGURING", "None", "starting", False),
        ("RUNNING", "None", "starting", False),
        ("COMPLETING", "TimeLimit", "dead", False),
        ("TIMEOUT", "TimeLimit", "dead", True),
        ("NODE_FAIL", "None", "dead", True),
        ("PREEMPTED", "None", "dead", True),
        ("GONE", "", "dead", True),
    ],
)
def test_slurm_states_map_to_kernel_states(state: str, reason: str, phase: str, final: bool) -> None:
    """Waiting is queued, running is starting (ready is the kernel service's), ended is dead."""
    mapped = kernel_state(JobStatus(5, state, reason))
    assert (mapped.phase, mapped.final, mapped.job_id, mapped.slurm_state) == (phase, final, 5, state)


def test_an_unknown_slurm_state_is_a_clear_error() -> None:
    """A state of a newer Slurm is named, not guessed."""
    with pytest.raises(SlurmOutputError, match="FROZEN"):
        kernel_state(JobStatus(5, "FROZEN", "None"))


def test_commands_are_found_or_named(tmp_path: Path) -> None:
    """On PATH, or configured (an executable absolute path); a missing one names the key that fixes it."""
    with pytest.raises(SlurmUnavailable, match=r"slurm\.sbatch"):
        SlurmCommands.from_config(SlurmConfig(enabled=True), path=str(tmp_path))
    for name in ("sbatch", "squeue", "scancel"):
        (tmp_path / name).write_text("#!/bin/sh\n")
        (tmp_path / name).chmod(0o755)
    found = SlurmCommands.from_config(SlurmConfig(enabled=True), path=str(tmp_path))
    assert (found.sbatch, found.sacct) == (str(tmp_path / "sbatch"), None)
    with pytest.raises(SlurmUnavailable, match=r"slurm\.squeue"):
        SlurmCommands.from_config(SlurmConfig(enabled=True, squeue="squeue"), path=str(tmp_path))
    assert os.access(found.scancel, os.X_OK)
