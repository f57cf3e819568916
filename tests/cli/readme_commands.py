#!/usr/bin/env python3
"""Doc-test: runs every shell command of a README's ```sh blocks, in order, as a user would.

    readme_commands.py [--as-written] README HOKUSAI_BINARY SOURCE_DIR WORK_DIR

Commands run in WORK_DIR (made fresh), where `configs/` and `data/` link to SOURCE_DIR and
`build/release/hokusai` to HOKUSAI_BINARY, so each command runs exactly as written (the README
assumes the project root) without writing into the source tree. One bash process runs them all in
order: `export` lines carry over and later commands see earlier runs' output (merge reads the
run that trained before it). A training command is shortened by appending
`--set train.steps=2` (a later --set wins), nothing else is changed; --as-written runs them
unshortened (the README's wall-time table comes from such a run). The two set-up commands of
the README's first block are run by CI itself (.ci/run is scripts/test.sh, and it runs
scripts/check-fresh-machine.sh for the quickstart); they are listed, not run again here.

Prints each command with its exit status and time; at the first command that fails (the ones
after it may depend on it), or when the README has no command at all, prints one line on stderr
and exits 1.
"""
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time

COVERED_ELSEWHERE = {
    "./scripts/quickstart.sh": "run in a new Debian 12 root by scripts/check-fresh-machine.sh (.ci/run)",
    "./scripts/test.sh": "this suite itself (.ci/run)",
}
SHORTEN_TRAINING = ["--set", "train.steps=2"]
TIMEOUT_S = 600


def commands(readme_text):
    """Shell commands of the ```sh/```bash blocks: continuation lines joined, comments and blank
    lines dropped. Each command is a list of words (shlex, POSIX rules)."""
    out = []
    for block in re.findall(r"^```(?:sh|bash|shell)\n(.*?)^```", readme_text, re.S | re.M):
        joined = re.sub(r"\\\n", " ", block)
        for line in joined.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                out.append(words)
    return out


def is_training(words):
    if "--dump-config" in words:
        return False
    return any(w.endswith("hokusai") and i + 1 < len(words) and words[i + 1] == "train"
               for i, w in enumerate(words))


def main():
    args = sys.argv[1:]
    as_written = args[:1] == ["--as-written"]
    if as_written:
        args = args[1:]
    if len(args) != 4:
        sys.exit("usage: readme_commands.py [--as-written] README HOKUSAI_BINARY SOURCE_DIR WORK_DIR")
    readme, binary, source, work = (pathlib.Path(a).resolve() for a in args)
    cmds = commands(readme.read_text())
    if not cmds:
        print(f"readme_commands: {readme}: no ```sh command found", file=sys.stderr)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    (work / "build/release").mkdir(parents=True)
    (work / "build/release/hokusai").symlink_to(binary)
    for d in ("configs", "data"):
        (work / d).symlink_to(source / d)

    script = ["set -o pipefail"]
    listed = []
    for n, words in enumerate(cmds, 1):
        text = shlex.join(words)
        if text in COVERED_ELSEWHERE:
            print(f"[{n:2}] not run here: {text} -- {COVERED_ELSEWHERE[text]}")
            continue
        run = words + SHORTEN_TRAINING if is_training(words) and not as_written else words
        listed.append((n, text))
        script.append(f"echo '@@ start {n}'")
        script.append(f"timeout {TIMEOUT_S} {shlex.join(run)}" if words[0] != "export" else shlex.join(run))
        script.append(f"__rc=$?; echo '@@ end {n}' $__rc; [ $__rc -eq 0 ] || exit $__rc")
    (work / "readme.sh").write_text("\n".join(script) + "\n")

    proc = subprocess.Popen(["bash", str(work / "readme.sh")], cwd=work, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    log = []
    started = {}
    results = {}
    for line in proc.stdout:
        log.append(line)
        m = re.match(r"@@ (start|end) (\d+)(?: (\d+))?", line)
        if not m:
            continue
        n = int(m.group(2))
        if m.group(1) == "start":
            started[n] = time.monotonic()
        else:
            results[n] = (int(m.group(3)), time.monotonic() - started[n])
    proc.wait()
    (work / "readme.log").write_text("".join(log))

    failed = None
    for n, text in listed:
        if n in results:
            rc, secs = results[n]
            print(f"[{n:2}] {'ok  ' if rc == 0 else 'FAIL'} {secs:6.1f} s  {text}")
            if rc != 0:
                failed = (n, text, rc)
        elif failed is None and n in started:
            failed = (n, text, proc.returncode)
            print(f"[{n:2}] FAIL          {text}")
    if failed is None and proc.returncode != 0:
        failed = (0, "(the script itself)", proc.returncode)
    if failed is not None:
        n, text, rc = failed
        tail = [l for l in log if not l.startswith("@@")][-25:]
        print(f"--- last output lines (whole log: {work / 'readme.log'}):\n{''.join(tail)}---")
        print(f"readme_commands: {readme.name} command {n} failed with exit {rc}: {text}", file=sys.stderr)
        return 1
    print(f"readme_commands: all {len(listed)} commands of {readme.name} passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
