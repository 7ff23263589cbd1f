//! The launcher's command line:
//!
//! ```text
//! charmrs-run [+pN] [++ppn K] [++local | ++nodelist FILE [++nodegroup NAME]
//!             | ++mpiexec | ++mpiexec-no-n] [++remote-shell CMD] [++timeout SECONDS]
//!             [++prefix] [++interactive] [++quiet] PROGRAM [ARGS...]
//! ```
//!
//! `++mpiexec` starts the processes with the cluster's MPI launcher (`mpiexec -n P`,
//! or the command `++remote-shell` names) instead of ssh, as charmrun's option does;
//! `++mpiexec-no-n` leaves out `-n P` for launchers that take the count from the batch
//! system.
//!
//! Launcher options come before the program; everything after the program goes to it
//! unchanged, runtime options (`+stats`, `+balancer X`, ...) included. `+pN` is the
//! job's total PE count (default 1), `++ppn K` the PEs per process (default: all the
//! PEs of a host in one process), and `N` must be a multiple of `K`. A bad or unknown
//! option is a [`LaunchError`] whose message names it; the launcher prints it and exits
//! with status 2.

use std::path::PathBuf;
use std::time::Duration;

/// What the launcher was asked to do.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct LaunchOptions {
    /// Total PEs of the job (`+pN`).
    pub pes: u32,
    /// PEs per process (`++ppn K`); `None`: one process per host.
    pub ppn: Option<u32>,
    /// Start every process on this host (`++local`; the default without a nodelist,
    /// given or found: see [`crate::launcher::nodelist::discover`]).
    pub local: bool,
    /// `++local` was given: no nodelist is looked for (see [`crate::launcher::nodelist::discover`]).
    pub local_given: bool,
    /// Hosts to start processes on (`++nodelist FILE`).
    pub nodelist: Option<PathBuf>,
    /// Group of the nodelist to use (`++nodegroup NAME`, default `main`).
    pub nodegroup: String,
    /// Command that runs a command on another host (`++remote-shell CMD`, default `ssh`;
    /// with `++mpiexec`, the MPI launcher, default `mpiexec`).
    pub remote_shell: String,
    /// `++remote-shell` was given.
    pub remote_shell_given: bool,
    /// Start the processes with the MPI launcher (`++mpiexec`, `++mpiexec-no-n`).
    pub mpiexec: Option<Mpiexec>,
    /// End the job after this long (`++timeout SECONDS`).
    pub timeout: Option<Duration>,
    /// Prefix every output line with `[pe N]` (`++prefix`).
    pub prefix: bool,
    /// Interactive mode (`++interactive`, Python only).
    pub interactive: bool,
    /// No runtime notices, errors only (`++quiet`, as charmrun's): the processes get
    /// `CHARMRS_WARN=all` and `CHARMRS_QUIET=1`.
    pub quiet: bool,
    /// On `++timeout`, send each process of this host SIGUSR1 before ending it, for it
    /// to print where it is (a charmrs process prints each PE's running entry method,
    /// a Python worker also its threads' stacks); on by default. A program that does
    /// not handle the signal ends from it, which the timeout was about to do anyway.
    pub dump_on_timeout: bool,
    /// The program to start.
    pub program: String,
    /// Its arguments, runtime options included, in order.
    pub args: Vec<String>,
}

/// How `++mpiexec` starts the processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mpiexec {
    /// `CMD -n P ...` (`++mpiexec`).
    WithCount,
    /// `CMD ...`: the launcher takes the count from the batch system (`++mpiexec-no-n`).
    NoCount,
}

/// A launcher command line that cannot be run.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LaunchError {
    /// An option the launcher does not know, before the program.
    #[error("unknown launcher option '{0}' (known: +p, ++ppn, ++local, ++nodelist, ++nodegroup, ++mpiexec, ++mpiexec-no-n, ++remote-shell, ++timeout, ++prefix, ++interactive, ++quiet)")]
    Unknown(String),
    /// An option without its value.
    #[error("launcher option '{0}' needs a value")]
    MissingValue(String),
    /// A value that does not fit the option.
    #[error("bad value '{value}' for launcher option '{option}': expected {expected}")]
    BadValue {
        /// The option.
        option: String,
        /// What was given.
        value: String,
        /// What it takes.
        expected: &'static str,
    },
    /// `+pN` not a multiple of `++ppn K`.
    #[error("+p{pes} is not a multiple of ++ppn {ppn}: every process runs the same number of PEs")]
    Uneven {
        /// Total PEs.
        pes: u32,
        /// PEs per process.
        ppn: u32,
    },
    /// `++local` and `++nodelist` together.
    #[error("++local and ++nodelist exclude each other")]
    LocalAndNodelist,
    /// `++mpiexec` with `++local` or `++nodelist`: the MPI launcher places the processes.
    #[error("++mpiexec excludes ++local and ++nodelist: the MPI launcher places the processes")]
    MpiexecAndHosts,
    /// No program to start.
    #[error("no program to start: charmrs-run [options] PROGRAM [ARGS...]")]
    NoProgram,
}

fn positive(option: &str, value: &str) -> Result<u32, LaunchError> {
    match value.parse::<u32>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(LaunchError::BadValue {
            option: option.into(),
            value: value.into(),
            expected: "a whole number >= 1",
        }),
    }
}

impl LaunchOptions {
    /// Parses the launcher's arguments (without `argv[0]`).
    ///
    /// # Errors
    /// See [`LaunchError`].
    pub fn parse<I, S>(args: I) -> Result<LaunchOptions, LaunchError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut it = args.into_iter().map(Into::into);
        let mut o = LaunchOptions {
            pes: 1,
            ppn: None,
            local: false,
            local_given: false,
            nodelist: None,
            nodegroup: "main".into(),
            remote_shell: "ssh".into(),
            remote_shell_given: false,
            mpiexec: None,
            dump_on_timeout: true,
            timeout: None,
            prefix: false,
            interactive: false,
            quiet: false,
            program: String::new(),
            args: Vec::new(),
        };
        let value = |it: &mut dyn Iterator<Item = String>, opt: &str| {
            it.next().ok_or_else(|| LaunchError::MissingValue(opt.into()))
        };
        while let Some(a) = it.next() {
            match a.as_str() {
                "++ppn" => o.ppn = Some(positive("++ppn", &value(&mut it, "++ppn")?)?),
                "++local" => {
                    o.local = true;
                    o.local_given = true;
                }
                "++nodelist" => o.nodelist = Some(PathBuf::from(value(&mut it, "++nodelist")?)),
                "++nodegroup" => o.nodegroup = value(&mut it, "++nodegroup")?,
                "++remote-shell" => {
                    o.remote_shell = value(&mut it, "++remote-shell")?;
                    o.remote_shell_given = true;
                }
                "++mpiexec" => o.mpiexec = Some(Mpiexec::WithCount),
                "++mpiexec-no-n" => o.mpiexec = Some(Mpiexec::NoCount),
                "++timeout" => {
                    let v = value(&mut it, "++timeout")?;
                    let secs =
                        v.parse::<f64>().ok().filter(|s| s.is_finite() && *s > 0.0).ok_or_else(|| {
                            LaunchError::BadValue {
                                option: "++timeout".into(),
                                value: v.clone(),
                                expected: "seconds > 0",
                            }
                        })?;
                    o.timeout = Some(Duration::from_secs_f64(secs));
                }
                "++prefix" => o.prefix = true,
                "++interactive" => o.interactive = true,
                "++quiet" => o.quiet = true,
                "+p" => o.pes = positive("+p", &value(&mut it, "+p")?)?,
                p if p.starts_with("+p") && p[2..].chars().all(|c| c.is_ascii_digit()) => {
                    o.pes = positive("+p", &p[2..])?
                }
                p if p.starts_with('+') => return Err(LaunchError::Unknown(p.into())),
                _ => {
                    o.program = a;
                    o.args = it.collect();
                    break;
                }
            }
        }
        if o.program.is_empty() {
            return Err(LaunchError::NoProgram);
        }
        if o.local && o.nodelist.is_some() {
            return Err(LaunchError::LocalAndNodelist);
        }
        if o.mpiexec.is_some() {
            if o.local || o.nodelist.is_some() {
                return Err(LaunchError::MpiexecAndHosts);
            }
            if !o.remote_shell_given {
                o.remote_shell = "mpiexec".into();
            }
            // The processes' hosts are not known here: one per PE unless `++ppn` says.
            o.ppn.get_or_insert(1);
        }
        if o.nodelist.is_none() {
            o.local = true;
        }
        if let Some(ppn) = o.ppn {
            if o.pes % ppn != 0 {
                return Err(LaunchError::Uneven { pes: o.pes, ppn });
            }
        }
        Ok(o)
    }

    /// Number of processes to start: `pes / ppn`, or one per host.
    pub fn processes(&self, hosts: u32) -> u32 {
        match self.ppn {
            Some(k) => self.pes / k,
            None => hosts.max(1).min(self.pes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_common_forms() {
        let o = LaunchOptions::parse(["+p8", "++ppn", "4", "./app", "+stats", "x"]).expect("valid");
        assert_eq!((o.pes, o.ppn, o.local), (8, Some(4), true));
        assert_eq!(o.program, "./app");
        assert_eq!(o.args, ["+stats", "x"], "runtime options after the program pass through");
        assert_eq!(o.processes(1), 2);
        let o = LaunchOptions::parse([
            "++nodelist",
            "nodes",
            "++remote-shell",
            "ip netns exec",
            "+p",
            "3",
            "prog",
        ])
        .expect("valid");
        assert_eq!(o.nodelist, Some(PathBuf::from("nodes")));
        assert_eq!(o.remote_shell, "ip netns exec");
        assert!(!o.local);
        assert_eq!(o.processes(3), 3);
        let o = LaunchOptions::parse(["++timeout", "2.5", "++prefix", "prog"]).expect("valid");
        assert_eq!(o.timeout, Some(Duration::from_millis(2500)));
        assert!(o.prefix && !o.quiet);
        assert!(LaunchOptions::parse(["++quiet", "+p2", "prog"]).expect("valid").quiet);
    }

    #[test]
    fn mistakes_are_named() {
        let e = |args: &[&str]| LaunchOptions::parse(args.iter().copied()).expect_err("invalid").to_string();
        assert!(e(&["+p0", "prog"]).contains("'+p'"));
        assert!(e(&["+pX", "prog"]).contains("unknown launcher option '+pX'"));
        assert!(e(&["++ppn", "prog"]).contains("bad value 'prog' for launcher option '++ppn'"));
        assert!(e(&["++ppn"]).contains("needs a value"));
        assert!(e(&["++nodes", "f", "prog"]).contains("unknown launcher option '++nodes'"));
        assert!(e(&["+p6", "++ppn", "4", "prog"]).contains("+p6 is not a multiple of ++ppn 4"));
        assert!(e(&["++local", "++nodelist", "f", "prog"]).contains("exclude each other"));
        assert!(e(&["++timeout", "-1", "prog"]).contains("seconds > 0"));
        assert!(e(&["+p4"]).contains("no program"));
        assert!(e(&["++mpiexec", "++local", "prog"]).contains("++mpiexec excludes"));
        assert!(e(&["++nodelist", "f", "++mpiexec-no-n", "prog"]).contains("++mpiexec excludes"));
    }

    #[test]
    fn mpiexec_takes_its_command_from_remote_shell() {
        let o = LaunchOptions::parse(["+p4", "++mpiexec", "prog"]).expect("valid");
        assert_eq!(
            (o.mpiexec, o.remote_shell.as_str(), o.ppn),
            (Some(Mpiexec::WithCount), "mpiexec", Some(1))
        );
        let o = LaunchOptions::parse([
            "++mpiexec-no-n",
            "++remote-shell",
            "srun --mpi=pmix",
            "+p4",
            "++ppn",
            "2",
            "p",
        ])
        .expect("valid");
        assert_eq!(
            (o.mpiexec, o.remote_shell.as_str(), o.ppn),
            (Some(Mpiexec::NoCount), "srun --mpi=pmix", Some(2))
        );
    }

    proptest! {
        #[test]
        fn program_arguments_are_untouched(args in proptest::collection::vec("[+a-z0-9-]{0,8}", 0..8), p in 1u32..64) {
            let mut line = vec![format!("+p{p}"), "prog".to_string()];
            line.extend(args.iter().cloned());
            let o = LaunchOptions::parse(line).expect("valid");
            prop_assert_eq!(o.pes, p);
            prop_assert_eq!(o.args, args);
        }

        #[test]
        fn garbage_never_panics(args in proptest::collection::vec(".{0,12}", 0..10)) {
            let _ = LaunchOptions::parse(args);
        }
    }
}
