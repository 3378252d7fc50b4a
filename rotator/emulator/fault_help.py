"""The ``--faults`` spec syntax, as ``rotator emulate-intercom --help`` shows it.

Apart from ``rotator.emulator.faults``, which parses it, because the CLI's parser is built at
every start, and the parser module imports nothing it does not need (start-up budget:
bench/RESULTS.md).
"""

SPEC_HELP = """\
A spec is a comma-separated list of KIND=RATE[:PARAM], each rate a probability in [0, 1]
drawn independently for every API request:

    429=RATE[:SECONDS]      answer 429 with X-RateLimit-* headers and Retry-After (default 1 s)
    5xx=RATE[:STATUS]       answer a server error (STATUS, default one of 500/502/503/504)
    latency=RATE:DURATION   wait DURATION (e.g. 20ms, 1.5s) before answering
    post_drop=RATE[:TIMES]  create the secret, then drop the connection without an answer
                            (at most TIMES times, when given)
    list_lag=RATE:DURATION  a list answer shows the workspace as it was DURATION ago: secrets
                            created since are missing, secrets deleted since still listed
                            (legal: lists may lag behind creates and deletes)
    seed=N                  make the draws reproducible

Example: 429=0.2,5xx=0.1:503,latency=1:20ms,post_drop=0.05,list_lag=0.5:3s,seed=7.
"""

__all__ = ["SPEC_HELP"]
