//! Runtime configuration: every runtime option and every `CHARMRS_*`
//! environment variable, parsed once into a typed [`Config`].
//!
//! This module is the single reference for what a charmrs program accepts.
//! A program started as `./app +p4 userarg` runs 4 PEs (processing
//! elements) in one process; everything that is not a runtime option is
//! handed to the program in [`Config::user_args`].
//!
//! # Command-line rules
//!
//! * Every argument that starts with a single `+` is a **runtime option**
//!   (the Charm++ convention). An unknown one is an error that names it.
//! * Arguments that start with `++` (`++ppn`, `++nodelist`, ...) are
//!   **launcher options**: they are only meaningful when the program is
//!   started by the `charmrs-run` launcher, so a program that sees one is an
//!   error ([`ConfigError::LauncherOption`]).
//! * A literal `--` ends runtime-option parsing: every later argument goes
//!   to [`Config::user_args`] verbatim (use it to pass a user argument that
//!   starts with `+`). The `--` itself is dropped.
//! * Every other argument (including `argv[0]`, which comes first) is a user
//!   argument and keeps its order.
//! * An option given twice: the last one wins.
//! * The command line wins over the environment: a variable is only read
//!   (and validated) when the matching option is absent from the command
//!   line. An empty variable counts as unset.
//!
//! # Options and environment variables
//!
//! | Option | Environment | Default | Meaning |
//! |---|---|---|---|
//! | `+pN` or `+p N` | `CHARMRS_PES=N` | `1` | Number of PEs (worker threads) in this process, `N >= 1`. `+p0` is an error. |
//! | `+stats` | — | off | Print the per-PE counters table at exit. |
//! | `+idle spin\|park\|adaptive` | `CHARMRS_IDLE` | `adaptive` | What an idle PE does: busy-spin, park its thread, or spin for a window then park ([`IdlePolicy`]). |
//! | `+spin-us N` | `CHARMRS_SPIN_US=N` | `50` | Start of the adaptive spin window, in microseconds (`0` allowed). |
//! | `+tree-arity K` | `CHARMRS_TREE_ARITY=K` | `4` | Fan-out of the spanning tree used for broadcasts and reductions, `K >= 2`. |
//! | `+nopin` | `CHARMRS_NOPIN=1` | pinning on | Do not pin PE threads to CPUs. `CHARMRS_NOPIN` accepts `1/true/yes/on` and `0/false/no/off`. |
//! | `+setcpuaffinity` | — | — | Accepted and ignored, for Charm++ compatibility (charmrs pins by default). |
//! | `+balancer NAME` | `CHARMRS_BALANCER` | none | The load balancer run at `at_sync` ([`Balancer`]): `GreedyLB`, `RefineLB`, `GreedyRefineLB`, `RotateLB`, `RandCentLB`, `DistributedLB`. Without one, `at_sync` moves nothing and resumes the elements. |
//! | `+LBDebug N` | — | `0` | Print what each load-balancing step did (`1`: a summary line; `2`: also every move). |
//! | `+LBOff` | — | — | No load balancing: `at_sync` moves nothing (whatever `+balancer` says). |
//! | `+LBCommOff`, `+LBObjOnly`, `+LBPeriod S` | — | — | Accepted and ignored, for Charm++ compatibility (the balancers use the objects' loads only, not the communication graph or background load, and run at every `at_sync`). |
//! | `--` | — | — | End of runtime options; the rest goes to the program. |
//! | — | `CHARMRS_WARN=a,b` | all on | Comma-separated warnings to silence: `oversubscribed` (more PEs than usable CPUs), `pinning` (a PE could not be pinned, or CPUs unknown), `hwloc` (hwloc topology unavailable, placement falls back to the affinity-mask order), or `all` ([`WarningKind`]). |
//! | — | `CHARMRS_RANK`, `CHARMRS_NUM_PROCESSES`, `CHARMRS_FIRST_PE`, `CHARMRS_TOTAL_PES`, `CHARMRS_JOB`, `CHARMRS_SECRET` | set by `charmrs-run` | A process's place in a job started by the launcher (with `CHARMRS_PES` for its PE count): see `charmrs_comm::bootstrap`. |
//! | — | `CHARMRS_RENDEZVOUS`, `CHARMRS_HOST` | set by `charmrs-run` | Where the launcher waits for the processes of a job of several, and which host a process is on (default: the host name). |
//! | — | `CHARMRS_CONNECT_TIMEOUT=S` | `30` | Seconds a process of a job of several waits for the launcher and its peers before it fails. |
//! | — | `CHARMRS_PEER_TIMEOUT=S` | `10` | Seconds a silent connection (a host gone, a network partitioned) takes to count as lost, ending the job. |
//! | — | `CHARMRS_SHM=0`, `CHARMRS_SHM_RING=BYTES` | on, 1 MiB | Shared memory between processes of a host (off: TCP), and the ring size per direction of each pair. |
//! | — | `CHARMRS_LOG` | `warn` | A `tracing` filter directive (e.g. `charmrs=debug`), read by the runtime when it installs its log subscriber; not parsed here. |
//!
//! Launcher-only options (need `charmrs-run`): `++ppn`, `++nodelist` and any
//! other `++option`. The Charm++ spelling `+ppn` is rejected with a hint to
//! use `++ppn` with the launcher.
//!
//! # Errors
//!
//! Parsing fails with a [`ConfigError`] whose `Display` is a one-line
//! message. The runtime prints it as `charmrs: <message>` on standard error
//! and exits with status 2.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use crate::sched::IdlePolicy;

/// Default number of PEs when neither `+p` nor `CHARMRS_PES` is given
/// (the Charm++ default).
pub const DEFAULT_PES: u32 = 1;
/// Default start of the adaptive spin window (`+spin-us`).
pub const DEFAULT_SPIN: Duration = Duration::from_micros(50);
/// Default spanning-tree fan-out (`+tree-arity`).
pub const DEFAULT_TREE_ARITY: u32 = 4;

/// The runtime options known on the command line, for error messages.
const KNOWN_OPTIONS: &str =
    "+p, +stats, +idle, +spin-us, +tree-arity, +nopin, +setcpuaffinity, +balancer, +LBDebug, +LBOff, +LBCommOff, +LBObjOnly, +LBPeriod";

/// A warning of the runtime that `CHARMRS_WARN` can silence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum WarningKind {
    /// More PEs than CPUs usable by the process (`oversubscribed`).
    Oversubscribed,
    /// A PE thread could not be pinned, or the usable CPUs are unknown
    /// (`pinning`).
    Pinning,
    /// The hwloc topology is unavailable; placement falls back to the
    /// affinity-mask order (`hwloc`).
    Hwloc,
}

impl WarningKind {
    /// Every warning kind.
    pub const ALL: [WarningKind; 3] = [WarningKind::Oversubscribed, WarningKind::Pinning, WarningKind::Hwloc];

    /// The name used in `CHARMRS_WARN`.
    pub fn name(self) -> &'static str {
        match self {
            WarningKind::Oversubscribed => "oversubscribed",
            WarningKind::Pinning => "pinning",
            WarningKind::Hwloc => "hwloc",
        }
    }

    /// The kind named `name` in `CHARMRS_WARN` (exact, lowercase).
    pub fn from_name(name: &str) -> Option<WarningKind> {
        WarningKind::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for WarningKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The typed runtime configuration, parsed once at start-up.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Number of PEs: `+pN` / `+p N`, env `CHARMRS_PES`; default 1.
    pub num_pes: u32,
    /// `+stats`: print the per-PE counters table at exit.
    pub stats: bool,
    /// `+idle spin|park|adaptive`, env `CHARMRS_IDLE`; default
    /// [`IdlePolicy::Adaptive`].
    pub idle: IdlePolicy,
    /// `+spin-us N`, env `CHARMRS_SPIN_US`: start of the adaptive spin
    /// window; default 50 µs.
    pub spin: Duration,
    /// `+tree-arity K`, env `CHARMRS_TREE_ARITY`: spanning-tree fan-out,
    /// `K >= 2`; default 4.
    pub tree_arity: u32,
    /// Pin PE threads to CPUs; default true. `+nopin` or `CHARMRS_NOPIN=1`
    /// disables it.
    pub pin: bool,
    /// Warnings silenced by `CHARMRS_WARN`.
    pub silenced_warnings: BTreeSet<WarningKind>,
    /// `+balancer NAME`, env `CHARMRS_BALANCER`: the load balancer of `at_sync`.
    pub balancer: Option<Balancer>,
    /// `+LBDebug N`: how much each load-balancing step prints.
    pub lb_debug: u32,
    /// `argv[0]` followed by every argument that is not a runtime option,
    /// in order.
    pub user_args: Vec<String>,
}

impl Default for Config {
    /// The defaults, with empty `user_args`.
    fn default() -> Config {
        Config {
            num_pes: DEFAULT_PES,
            stats: false,
            idle: IdlePolicy::Adaptive,
            spin: DEFAULT_SPIN,
            tree_arity: DEFAULT_TREE_ARITY,
            pin: true,
            silenced_warnings: BTreeSet::new(),
            balancer: None,
            lb_debug: 0,
            user_args: Vec::new(),
        }
    }
}

/// A load-balancing strategy (`+balancer NAME`), with Charm++'s names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Balancer {
    /// `GreedyLB`: heaviest object first onto the least loaded PE, ignoring where
    /// objects are (many moves, best balance). Gathers every load on one PE.
    Greedy,
    /// `RefineLB`: moves objects off PEs above the average (plus 5%) onto the least
    /// loaded PEs, few moves. Gathers every load on one PE.
    Refine,
    /// `GreedyRefineLB`: the greedy placement, keeping each object where it is when
    /// that does not raise the greedy maximum.
    GreedyRefine,
    /// `RotateLB`: every object moves to the next PE (for testing migration).
    Rotate,
    /// `RandCentLB`: every object goes to a random PE (for testing migration).
    RandCent,
    /// `DistributedLB`: no PE sees every load; PEs learn the average by a reduction,
    /// then PEs above it hand objects to PEs below it that accept them.
    Distributed,
}

impl Balancer {
    /// Every strategy, and its name.
    pub const ALL: [(Balancer, &'static str); 6] = [
        (Balancer::Greedy, "GreedyLB"),
        (Balancer::Refine, "RefineLB"),
        (Balancer::GreedyRefine, "GreedyRefineLB"),
        (Balancer::Rotate, "RotateLB"),
        (Balancer::RandCent, "RandCentLB"),
        (Balancer::Distributed, "DistributedLB"),
    ];

    /// The strategy of this name.
    pub fn from_name(name: &str) -> Option<Balancer> {
        Balancer::ALL.into_iter().find(|(_, n)| *n == name).map(|(b, _)| b)
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        Balancer::ALL.into_iter().find(|(b, _)| *b == self).map(|(_, n)| n).expect("listed")
    }
}

const EXPECT_BALANCER: &str = "GreedyLB, RefineLB, GreedyRefineLB, RotateLB, RandCentLB or DistributedLB";
const EXPECT_LBDEBUG: &str = "a whole number >= 0";

/// Why the command line or the environment was rejected.
///
/// `Display` gives a one-line message; the runtime prints it as
/// `charmrs: <message>` and exits with status 2.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// An argument starting with `+` that is not a runtime option.
    #[error("unknown runtime option '{option}' ({})", unknown_hint(.option))]
    UnknownOption {
        /// The argument as given.
        option: String,
    },
    /// A runtime option with a value that does not parse.
    #[error("invalid value '{value}' for runtime option '{option}': expected {expected}")]
    BadValue {
        /// The option, without its value (e.g. `+p`).
        option: String,
        /// The value as given.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A runtime option that needs a value came last.
    #[error("runtime option '{option}' needs a value")]
    MissingValue {
        /// The option.
        option: String,
    },
    /// `+p0` (or `+p 0`).
    #[error("invalid runtime option '+p0': the number of PEs must be at least 1")]
    ZeroPes,
    /// A `++option`, which only the `charmrs-run` launcher understands.
    #[error("'{option}' is a launcher option: start the program with `charmrs-run` to use it")]
    LauncherOption {
        /// The argument as given.
        option: String,
    },
    /// A `CHARMRS_*` environment variable with a value that does not parse.
    #[error("invalid value '{value}' in environment variable {var}: expected {expected}")]
    BadEnv {
        /// The variable name.
        var: &'static str,
        /// The value as found.
        value: String,
        /// What was expected.
        expected: &'static str,
    },
}

/// The parenthesised hint of [`ConfigError::UnknownOption`].
fn unknown_hint(option: &str) -> String {
    let name = option.trim_start_matches('+');
    let name = name.split('=').next().unwrap_or(name);
    if matches!(name, "ppn" | "nodelist" | "n" | "np" | "nodes") {
        format!("did you mean '++{name}'? it needs the `charmrs-run` launcher")
    } else {
        format!("known: {KNOWN_OPTIONS}; use '--' to pass arguments starting with '+' to the program")
    }
}

/// Expected-value descriptions, shared by options and variables.
const EXPECT_PES: &str = "a positive integer";
/// See [`EXPECT_PES`].
const EXPECT_IDLE: &str = "one of spin, park, adaptive";
/// See [`EXPECT_PES`].
const EXPECT_SPIN: &str = "a whole number of microseconds";
/// See [`EXPECT_PES`].
const EXPECT_ARITY: &str = "an integer >= 2";
/// See [`EXPECT_PES`].
const EXPECT_BOOL: &str = "1/true/yes/on or 0/false/no/off";
/// See [`EXPECT_PES`].
const EXPECT_WARN: &str = "a comma-separated list of oversubscribed, pinning, hwloc, all";

/// Parses a PE count; `Err(None)` means zero, `Err(Some(()))` garbage.
fn parse_pes(s: &str) -> Result<u32, Option<()>> {
    if !s.bytes().all(|b| b.is_ascii_digit()) || s.is_empty() {
        return Err(Some(()));
    }
    match s.parse::<u32>() {
        Ok(0) => Err(None),
        Ok(n) => Ok(n),
        Err(_) => Err(Some(())),
    }
}

/// Parses an idle policy name (case-insensitive).
fn parse_idle(s: &str) -> Option<IdlePolicy> {
    match s.to_ascii_lowercase().as_str() {
        "spin" => Some(IdlePolicy::Spin),
        "park" => Some(IdlePolicy::Park),
        "adaptive" => Some(IdlePolicy::Adaptive),
        _ => None,
    }
}

/// Parses a spin window in microseconds.
fn parse_spin(s: &str) -> Option<Duration> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().map(Duration::from_micros)
}

/// Parses a tree arity (`>= 2`).
fn parse_arity(s: &str) -> Option<u32> {
    if !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u32>().ok().filter(|&k| k >= 2)
}

/// Parses a boolean environment value.
fn parse_bool(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// Parses `CHARMRS_WARN`: comma-separated names, blanks ignored.
fn parse_warn(s: &str) -> Option<BTreeSet<WarningKind>> {
    let mut set = BTreeSet::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let item = item.to_ascii_lowercase();
        if item == "all" {
            set.extend(WarningKind::ALL);
        } else {
            set.insert(WarningKind::from_name(&item)?);
        }
    }
    Some(set)
}

/// Options seen on the command line (`None` = not given).
#[derive(Default)]
struct CmdLine {
    /// `+p`.
    num_pes: Option<u32>,
    /// `+stats`.
    stats: bool,
    /// `+idle`.
    idle: Option<IdlePolicy>,
    /// `+spin-us`.
    spin: Option<Duration>,
    /// `+tree-arity`.
    tree_arity: Option<u32>,
    /// `+nopin`.
    nopin: bool,
    /// `+balancer`.
    balancer: Option<Balancer>,
    /// `+LBDebug`.
    lb_debug: u32,
    /// `+LBOff`.
    lb_off: bool,
}

impl Config {
    /// Parses argv (argv\[0\] first) and an environment lookup. Command-line
    /// wins over env.
    ///
    /// `env` is called with `CHARMRS_*` names only, and only for settings
    /// not given on the command line.
    pub fn parse<I, S>(args: I, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut it = args.into_iter().map(Into::into);
        let mut user_args: Vec<String> = it.next().into_iter().collect();
        let mut cmd = CmdLine::default();

        while let Some(arg) = it.next() {
            if arg == "--" {
                user_args.extend(it.by_ref());
                break;
            }
            if arg.starts_with("++") {
                return Err(ConfigError::LauncherOption { option: arg });
            }
            let Some(name) = arg.strip_prefix('+') else {
                user_args.push(arg);
                continue;
            };
            match name {
                "stats" => cmd.stats = true,
                "nopin" => cmd.nopin = true,
                "setcpuaffinity" | "LBCommOff" | "LBObjOnly" => {}
                "LBPeriod" => {
                    let value = it.next().ok_or_else(|| ConfigError::MissingValue { option: arg.clone() })?;
                    if !value.parse::<f64>().is_ok_and(|v| v >= 0.0) {
                        return Err(ConfigError::BadValue {
                            option: arg.clone(),
                            value,
                            expected: "seconds >= 0",
                        });
                    }
                }
                "LBOff" => cmd.lb_off = true,
                "balancer" | "LBDebug" => {
                    let value = it.next().ok_or_else(|| ConfigError::MissingValue { option: arg.clone() })?;
                    if name == "balancer" {
                        let b = Balancer::from_name(&value).ok_or_else(|| ConfigError::BadValue {
                            option: arg.clone(),
                            value: value.clone(),
                            expected: EXPECT_BALANCER,
                        })?;
                        cmd.balancer = Some(b);
                    } else {
                        cmd.lb_debug = value.parse().map_err(|_| ConfigError::BadValue {
                            option: arg.clone(),
                            value: value.clone(),
                            expected: EXPECT_LBDEBUG,
                        })?;
                    }
                }
                "idle" | "spin-us" | "tree-arity" => {
                    let value = it.next().ok_or_else(|| ConfigError::MissingValue { option: arg.clone() })?;
                    let bad = |expected| ConfigError::BadValue {
                        option: arg.clone(),
                        value: value.clone(),
                        expected,
                    };
                    match name {
                        "idle" => cmd.idle = Some(parse_idle(&value).ok_or_else(|| bad(EXPECT_IDLE))?),
                        "spin-us" => cmd.spin = Some(parse_spin(&value).ok_or_else(|| bad(EXPECT_SPIN))?),
                        _ => {
                            cmd.tree_arity = Some(parse_arity(&value).ok_or_else(|| bad(EXPECT_ARITY))?);
                        }
                    }
                }
                "ppn" => return Err(ConfigError::UnknownOption { option: arg }),
                _ if name.starts_with('p') => {
                    let inline = &name[1..];
                    let value = if inline.is_empty() {
                        it.next().ok_or_else(|| ConfigError::MissingValue { option: "+p".to_owned() })?
                    } else {
                        inline.to_owned()
                    };
                    cmd.num_pes = Some(match parse_pes(&value) {
                        Ok(n) => n,
                        Err(None) => return Err(ConfigError::ZeroPes),
                        Err(Some(())) => {
                            // `+pfoo` with a non-numeric tail is most likely
                            // a misspelled option rather than a bad count.
                            if !inline.is_empty()
                                && !inline.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+')
                                && inline.len() > 1
                            {
                                return Err(ConfigError::UnknownOption { option: arg });
                            }
                            return Err(ConfigError::BadValue {
                                option: "+p".to_owned(),
                                value,
                                expected: EXPECT_PES,
                            });
                        }
                    });
                }
                _ => return Err(ConfigError::UnknownOption { option: arg }),
            }
        }

        // Environment, only for what the command line left unset.
        let var = |name: &'static str| env(name).filter(|v| !v.trim().is_empty());
        let bad_env =
            |var: &'static str, value: String, expected| ConfigError::BadEnv { var, value, expected };
        let defaults = Config::default();

        let num_pes = match cmd.num_pes {
            Some(n) => n,
            None => match var("CHARMRS_PES") {
                Some(v) => parse_pes(v.trim()).map_err(|_| bad_env("CHARMRS_PES", v, EXPECT_PES))?,
                None => defaults.num_pes,
            },
        };
        let idle = match cmd.idle {
            Some(p) => p,
            None => match var("CHARMRS_IDLE") {
                Some(v) => parse_idle(v.trim()).ok_or_else(|| bad_env("CHARMRS_IDLE", v, EXPECT_IDLE))?,
                None => defaults.idle,
            },
        };
        let spin = match cmd.spin {
            Some(d) => d,
            None => match var("CHARMRS_SPIN_US") {
                Some(v) => parse_spin(v.trim()).ok_or_else(|| bad_env("CHARMRS_SPIN_US", v, EXPECT_SPIN))?,
                None => defaults.spin,
            },
        };
        let tree_arity = match cmd.tree_arity {
            Some(k) => k,
            None => match var("CHARMRS_TREE_ARITY") {
                Some(v) => {
                    parse_arity(v.trim()).ok_or_else(|| bad_env("CHARMRS_TREE_ARITY", v, EXPECT_ARITY))?
                }
                None => defaults.tree_arity,
            },
        };
        let pin = if cmd.nopin {
            false
        } else {
            match var("CHARMRS_NOPIN") {
                Some(v) => !parse_bool(&v).ok_or_else(|| bad_env("CHARMRS_NOPIN", v, EXPECT_BOOL))?,
                None => defaults.pin,
            }
        };
        let silenced_warnings = match var("CHARMRS_WARN") {
            Some(v) => parse_warn(&v).ok_or_else(|| bad_env("CHARMRS_WARN", v, EXPECT_WARN))?,
            None => BTreeSet::new(),
        };

        let balancer = match cmd.balancer {
            _ if cmd.lb_off => None,
            Some(b) => Some(b),
            None => match var("CHARMRS_BALANCER") {
                Some(v) => Some(
                    Balancer::from_name(v.trim())
                        .ok_or_else(|| bad_env("CHARMRS_BALANCER", v, EXPECT_BALANCER))?,
                ),
                None => None,
            },
        };

        if let Some(n) = var("CHARMRS_NUM_PROCESSES") {
            if !matches!(n.parse::<u32>(), Ok(1..)) {
                return Err(bad_env("CHARMRS_NUM_PROCESSES", n, "a whole number >= 1"));
            }
        }

        Ok(Config {
            num_pes,
            stats: cmd.stats,
            idle,
            spin,
            tree_arity,
            pin,
            silenced_warnings,
            balancer,
            lb_debug: cmd.lb_debug,
            user_args,
        })
    }

    /// `parse(std::env::args(), |k| std::env::var(k).ok())`.
    ///
    /// Arguments that are not valid Unicode are converted lossily.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::parse(std::env::args_os().map(|a| a.to_string_lossy().into_owned()), |k| {
            std::env::var(k).ok()
        })
    }

    /// Whether warnings of kind `name` should be shown (not silenced by
    /// `CHARMRS_WARN`).
    pub fn warning_enabled(&self, name: WarningKind) -> bool {
        !self.silenced_warnings.contains(&name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse(args: &[&str]) -> Result<Config, ConfigError> {
        Config::parse(args.iter().copied(), no_env)
    }

    fn parse_env(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::parse(args.iter().copied(), move |k| map.get(k).cloned())
    }

    fn err(args: &[&str]) -> String {
        parse(args).unwrap_err().to_string()
    }

    #[test]
    fn balancer_and_lbdebug() {
        let c = parse(&["a", "+balancer", "GreedyLB", "+LBDebug", "2", "x"]).unwrap();
        assert_eq!(c.balancer, Some(Balancer::Greedy));
        assert_eq!(c.lb_debug, 2);
        assert_eq!(c.user_args, vec!["a", "x"]);
        assert_eq!(parse(&["a"]).unwrap().balancer, None);
        for (b, name) in Balancer::ALL {
            assert_eq!(parse(&["a", "+balancer", name]).unwrap().balancer, Some(b));
            assert_eq!(b.name(), name);
        }
        let m = err(&["a", "+balancer", "FooLB"]);
        assert!(
            m.contains("GreedyLB, RefineLB, GreedyRefineLB, RotateLB, RandCentLB or DistributedLB"),
            "{m}"
        );
        assert!(err(&["a", "+balancer"]).contains("needs a value"));
        assert!(err(&["a", "+LBDebug", "x"]).contains("+LBDebug"));
        assert_eq!(parse(&["a", "+balancer", "GreedyLB", "+LBOff"]).unwrap().balancer, None);
        let c =
            parse(&["a", "+LBCommOff", "+LBObjOnly", "+LBPeriod", "0.5", "+balancer", "RefineLB"]).unwrap();
        assert_eq!(c.balancer, Some(Balancer::Refine));
        assert_eq!(c.user_args, vec!["a"]);
        assert!(err(&["a", "+LBPeriod", "x"]).contains("+LBPeriod"));
        let env = parse_env(&["a"], &[("CHARMRS_BALANCER", "RotateLB")]).unwrap();
        assert_eq!(env.balancer, Some(Balancer::Rotate));
        assert!(parse_env(&["a"], &[("CHARMRS_BALANCER", "x")]).is_err());
    }

    #[test]
    fn defaults() {
        let c = parse(&["app"]).unwrap();
        assert_eq!(c.num_pes, 1);
        assert!(!c.stats);
        assert_eq!(c.idle, IdlePolicy::Adaptive);
        assert_eq!(c.spin, Duration::from_micros(50));
        assert_eq!(c.tree_arity, 4);
        assert!(c.pin);
        assert!(c.silenced_warnings.is_empty());
        assert_eq!(c.user_args, ["app"]);
        for k in WarningKind::ALL {
            assert!(c.warning_enabled(k));
        }
    }

    #[test]
    fn empty_argv_is_fine() {
        let c = Config::parse(Vec::<String>::new(), no_env).unwrap();
        assert!(c.user_args.is_empty());
    }

    #[test]
    fn all_options() {
        let c = parse(&[
            "app",
            "x",
            "+p4",
            "+stats",
            "y",
            "+idle",
            "park",
            "+spin-us",
            "7",
            "+tree-arity",
            "2",
            "+nopin",
            "+setcpuaffinity",
            "-z",
        ])
        .unwrap();
        assert_eq!(c.num_pes, 4);
        assert!(c.stats);
        assert_eq!(c.idle, IdlePolicy::Park);
        assert_eq!(c.spin, Duration::from_micros(7));
        assert_eq!(c.tree_arity, 2);
        assert!(!c.pin);
        assert_eq!(c.user_args, ["app", "x", "y", "-z"]);
    }

    #[test]
    fn p_separate_value_and_last_wins() {
        assert_eq!(parse(&["a", "+p", "3"]).unwrap().num_pes, 3);
        assert_eq!(parse(&["a", "+p2", "+p", "5"]).unwrap().num_pes, 5);
    }

    #[test]
    fn bad_pes() {
        assert!(matches!(parse(&["a", "+p0"]), Err(ConfigError::ZeroPes)));
        assert!(matches!(parse(&["a", "+p", "0"]), Err(ConfigError::ZeroPes)));
        assert!(matches!(
            parse(&["a", "+p-1"]),
            Err(ConfigError::BadValue { ref value, .. }) if value == "-1"
        ));
        assert!(matches!(parse(&["a", "+pabc"]), Err(ConfigError::UnknownOption { .. })));
        assert!(matches!(parse(&["a", "+p", "abc"]), Err(ConfigError::BadValue { .. })));
        assert!(matches!(parse(&["a", "+p4x"]), Err(ConfigError::BadValue { .. })));
        assert!(matches!(parse(&["a", "+p99999999999"]), Err(ConfigError::BadValue { .. })));
        assert!(matches!(parse(&["a", "+p"]), Err(ConfigError::MissingValue { .. })));
        assert_eq!(err(&["a", "+p"]), "runtime option '+p' needs a value");
        assert_eq!(
            err(&["a", "+p-1"]),
            "invalid value '-1' for runtime option '+p': expected a positive integer"
        );
        assert!(err(&["a", "+p0"]).contains("at least 1"));
        assert!(err(&["a", "+pabc"]).contains("'+pabc'"));
    }

    #[test]
    fn bad_values() {
        assert!(matches!(parse(&["a", "+idle", "nap"]), Err(ConfigError::BadValue { .. })));
        assert!(matches!(parse(&["a", "+idle"]), Err(ConfigError::MissingValue { .. })));
        assert!(matches!(parse(&["a", "+tree-arity", "1"]), Err(ConfigError::BadValue { .. })));
        assert!(matches!(parse(&["a", "+spin-us", "-3"]), Err(ConfigError::BadValue { .. })));
        assert!(matches!(parse(&["a", "+spin-us"]), Err(ConfigError::MissingValue { .. })));
        assert_eq!(parse(&["a", "+idle", "SPIN"]).unwrap().idle, IdlePolicy::Spin);
        assert_eq!(parse(&["a", "+spin-us", "0"]).unwrap().spin, Duration::ZERO);
    }

    #[test]
    fn unknown_and_launcher_options() {
        let m = err(&["a", "+foo"]);
        assert!(m.starts_with("unknown runtime option '+foo' (known: +p, +stats"), "{m}");
        assert!(!m.contains('\n'));
        assert!(matches!(parse(&["a", "+"]), Err(ConfigError::UnknownOption { .. })));
        let m = err(&["a", "+ppn", "2"]);
        assert!(m.contains("++ppn") && m.contains("charmrs-run"), "{m}");
        let e = parse(&["a", "++ppn", "2"]).unwrap_err();
        assert!(matches!(e, ConfigError::LauncherOption { ref option } if option == "++ppn"));
        assert!(e.to_string().contains("charmrs-run"));
    }

    #[test]
    fn double_dash_ends_options() {
        let c = parse(&["a", "+p2", "--", "+p3", "--", "++x", "+foo"]).unwrap();
        assert_eq!(c.num_pes, 2);
        assert_eq!(c.user_args, ["a", "+p3", "--", "++x", "+foo"]);
        // argv[0] is never an option.
        assert_eq!(parse(&["+weird-name"]).unwrap().user_args, ["+weird-name"]);
    }

    #[test]
    fn env_values_and_precedence() {
        let env = [
            ("CHARMRS_PES", "3"),
            ("CHARMRS_IDLE", "spin"),
            ("CHARMRS_SPIN_US", " 10 "),
            ("CHARMRS_TREE_ARITY", "8"),
            ("CHARMRS_NOPIN", "1"),
            ("CHARMRS_WARN", "hwloc, Pinning,,"),
        ];
        let c = parse_env(&["a"], &env).unwrap();
        assert_eq!(c.num_pes, 3);
        assert_eq!(c.idle, IdlePolicy::Spin);
        assert_eq!(c.spin, Duration::from_micros(10));
        assert_eq!(c.tree_arity, 8);
        assert!(!c.pin);
        assert!(!c.warning_enabled(WarningKind::Hwloc));
        assert!(!c.warning_enabled(WarningKind::Pinning));
        assert!(c.warning_enabled(WarningKind::Oversubscribed));

        let c = parse_env(&["a", "+p2", "+idle", "park"], &env).unwrap();
        assert_eq!(c.num_pes, 2);
        assert_eq!(c.idle, IdlePolicy::Park);
        // A bad variable overridden by the command line is not read.
        let c = parse_env(&["a", "+p2"], &[("CHARMRS_PES", "lots")]).unwrap();
        assert_eq!(c.num_pes, 2);
        // Empty counts as unset.
        assert_eq!(parse_env(&["a"], &[("CHARMRS_PES", "")]).unwrap().num_pes, 1);
        assert!(parse_env(&["a"], &[("CHARMRS_NOPIN", "0")]).unwrap().pin);
        let all = parse_env(&["a"], &[("CHARMRS_WARN", "all")]).unwrap();
        assert!(WarningKind::ALL.iter().all(|&k| !all.warning_enabled(k)));
    }

    #[test]
    fn bad_env() {
        for (var, val) in [
            ("CHARMRS_PES", "0"),
            ("CHARMRS_PES", "x"),
            ("CHARMRS_IDLE", "nap"),
            ("CHARMRS_SPIN_US", "1.5"),
            ("CHARMRS_TREE_ARITY", "1"),
            ("CHARMRS_NOPIN", "maybe"),
            ("CHARMRS_WARN", "hwloc,loud"),
        ] {
            let e = parse_env(&["a"], &[(var, val)]).unwrap_err();
            assert!(matches!(e, ConfigError::BadEnv { var: v, .. } if v == var), "{var}");
            let m = e.to_string();
            assert!(m.contains(var) && m.contains(val), "{m}");
        }
    }

    #[test]
    fn warning_names_round_trip() {
        for k in WarningKind::ALL {
            assert_eq!(WarningKind::from_name(k.name()), Some(k));
            assert_eq!(k.to_string(), k.name());
        }
    }

    proptest! {
        #[test]
        fn user_args_survive_in_order(
            items in proptest::collection::vec(
                prop_oneof![
                    "[a-zA-Z0-9_./=-][a-zA-Z0-9_./=+-]{0,8}".prop_map(Some),
                    Just(None),
                ],
                0..16,
            )
        ) {
            // None = a runtime option sprinkled between the user args.
            let mut args = vec!["prog".to_string()];
            let mut expected = vec!["prog".to_string()];
            for item in items {
                match item {
                    Some(a) if a != "--" => {
                        expected.push(a.clone());
                        args.push(a);
                    }
                    Some(_) => {}
                    None => args.push("+stats".to_string()),
                }
            }
            let c = Config::parse(args, no_env).unwrap();
            prop_assert_eq!(c.user_args, expected);
        }

        #[test]
        fn p_round_trips(n in 1u32..=4096, separate in any::<bool>()) {
            let args = if separate {
                vec!["a".to_string(), "+p".to_string(), n.to_string()]
            } else {
                vec!["a".to_string(), format!("+p{n}")]
            };
            let c = Config::parse(args, no_env).unwrap();
            prop_assert_eq!(c.num_pes, n);
            prop_assert_eq!(c.user_args, vec!["a".to_string()]);
        }

        #[test]
        fn garbage_never_panics(
            args in proptest::collection::vec(
                prop_oneof!["\\PC*", "\\+\\PC{0,6}", "\\+\\+\\PC{0,4}", "\\+p\\PC{0,4}"],
                0..10,
            ),
            env_val in "\\PC{0,8}",
        ) {
            let r = Config::parse(args, |_| Some(env_val.clone()));
            if let Err(e) = r {
                let m = e.to_string();
                prop_assert!(!m.is_empty());
            }
        }
    }
}
