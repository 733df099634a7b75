"""What the Python benchmarks report about the CPU, and whether bf16 can run on it: asked of dermis's
capability probe (framework/cpu.h) through `bench/train_throughput --cpu-info`, so the scripts and
the C++ benchmarks give the same answer (ONEDNN_MAX_CPU_ISA included)."""
import json, os, subprocess, sys


def query(build):
    """The probe's JSON: model, cores, onednn_isa, isa_capped, hw_flags, bf16, winograd, summary, bf16_error."""
    exe = os.path.join(build, 'bench', 'train_throughput')
    if not os.access(exe, os.X_OK):
        sys.exit(f"{os.path.basename(sys.argv[0])}: {exe} not found; build first (./dermis build)")
    r = subprocess.run([exe, '--cpu-info'], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"{os.path.basename(sys.argv[0])}: {exe} --cpu-info failed:\n{r.stderr.strip()}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def require_bf16(cpu, prog, flag):
    """Exits (code 2, as for a bad flag) with the probe's reason when bf16 cannot run here; `flag` is
    the script's dtype flag ('--dtypes' or '--dtype'), which the message names."""
    if not cpu['bf16']:
        print(f"{prog}: error: {cpu['bf16_error'].replace('--dtypes', flag)}", file=sys.stderr)
        sys.exit(2)
