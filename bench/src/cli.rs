//! The benchmark's command line: the options of the full run and the subcommands that run one
//! part alone.

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "credmgr's benchmarks: the filter against native Envoy, side by side")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Sub>,
    /// Only the data-plane comparison (make bench-quick).
    #[arg(long)]
    pub(crate) quick: bool,
    /// Rounds; each runs every variant once, interleaved.
    #[arg(long, default_value_t = 5)]
    pub(crate) rounds: usize,
    /// Seconds of load per variant and round.
    #[arg(long, default_value_t = 5)]
    pub(crate) seconds: u64,
    /// Seconds of warm-up load per variant before the rounds.
    #[arg(long, default_value_t = 2)]
    pub(crate) warmup_seconds: u64,
    /// Keep-alive connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub(crate) connections: u32,
    /// Core of Envoy (and of the control plane when its runtime API is measured).
    #[arg(long, default_value_t = 0)]
    pub(crate) server_cpu: usize,
    /// Core of the load generator.
    #[arg(long, default_value_t = 1)]
    pub(crate) load_cpu: usize,
    /// Where latest.json and the chart go.
    #[arg(long, default_value = "bench/results")]
    pub(crate) out: PathBuf,
}

#[derive(Subcommand)]
pub(crate) enum Sub {
    /// Only the refresh-under-load run, printed, not written to latest.json.
    Refresh {
        /// Lifetime of the OAuth server's tokens, in seconds.
        #[arg(long, default_value_t = 10)]
        ttl: u32,
        /// Seconds of load.
        #[arg(long, default_value_t = 26)]
        seconds: u64,
    },
    /// Only the scale run (connections created through the management API, memory, the
    /// proactive scheduler's lag), printed; with --record, also written to latest.json's
    /// `scale` key, the rest of the file kept.
    Scale {
        /// Client-credentials connections to create.
        #[arg(long, default_value_t = 100_000)]
        connections: usize,
        /// Seconds over which the refreshes planned for the window come due.
        #[arg(long, default_value_t = 60)]
        window: u64,
        /// Create calls in flight.
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Multiplies the steady-state refresh rate of the window (1: what the connections'
        /// one-hour tokens produce, connections / 2880 s).
        #[arg(long, default_value_t = 1.0)]
        rate_factor: f64,
        /// How long the token endpoint takes to answer a refresh, in milliseconds.
        #[arg(long, default_value_t = 100)]
        refresh_latency_ms: u64,
        /// sqlite, postgresql or both.
        #[arg(long, default_value = "sqlite")]
        store: String,
        /// Write the figures into <out>/latest.json under `scale`.
        #[arg(long)]
        record: bool,
    },
    /// Only the instruction counts (Envoy under callgrind), printed; with --record, also
    /// written to latest.json's `dataplane_instructions`, the rest of the file kept.
    Instructions {
        /// Measured requests per repeat.
        #[arg(long, default_value_t = 2000)]
        requests: usize,
        /// Warm-up requests per variant before the repeats.
        #[arg(long, default_value_t = 2000)]
        warmup: usize,
        /// Repeats per variant (their spread shows the method's precision).
        #[arg(long, default_value_t = 3)]
        repeats: usize,
        /// Only these rows, comma-separated (and the rows their ratios are to).
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
        /// Where the run's processes keep their files, under the repository.
        #[arg(long, default_value = "run/bench-instructions")]
        run_dir: String,
        /// Write the figures into <out>/latest.json.
        #[arg(long)]
        record: bool,
    },
    /// Only the runtime API part (SQLite, PostgreSQL, bare handler), printed, not written to
    /// latest.json.
    Runtime,
    /// Only the hot-path profile (the probe filter's steps against the baseline, the empty
    /// filter and credmgr), printed, not written to latest.json.
    Profile,
    /// Draw the chart of an existing latest.json again, without measuring.
    Chart {
        /// The directory holding latest.json; the chart is written next to it.
        #[arg(long, default_value = "bench/results")]
        out: PathBuf,
    },
    /// Serve the bare axum handler the runtime API is compared with (used by the benchmark
    /// itself; the gateway key comes from CREDMGR_BENCH_GATEWAY_KEY).
    BareRuntime {
        #[arg(long)]
        listen: String,
    },
}
