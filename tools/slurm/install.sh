#!/usr/bin/env bash
# Installs Debian's Slurm and MUNGE for the Slurm integration test (tools/slurm/cluster.sh), if
# they are missing and this is a root Debian/Ubuntu machine. Never fails: without them the test
# skips, saying why.
PATH=$PATH:/usr/sbin:/sbin
missing=0
for tool in munged slurmctld slurmd sbatch; do
    command -v "$tool" >/dev/null || missing=1
done
[[ $missing == 0 ]] && exit 0
if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "note: Slurm is not installed (needs root and apt-get); its test will be skipped" >&2
    exit 0
fi
echo "installing slurm-wlm and munge for the Slurm test" >&2
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge; } \
    >/tmp/foldwise-slurm-install.log 2>&1; then
    echo "note: installing Slurm failed (see /tmp/foldwise-slurm-install.log); its test will be skipped" >&2
fi
exit 0
