//! `charmrs-run`: starts a charmrs job's processes (see `charmrs_comm::launcher`).
//!
//! ```text
//! charmrs-run +p4 ++ppn 2 ./app args...
//! charmrs-run +p8 ++ppn 2 ++nodelist nodes ++remote-shell ssh ./app args...
//! ```
//!
//! Exit status: the job's (0 when every process ended with 0), the failing process's
//! status, 124 on `++timeout`, 130/143 on SIGINT/SIGTERM, 2 on a bad command line.

use charmrs_comm::launcher::{local, options::LaunchOptions};

fn main() {
    let opts = match LaunchOptions::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("charmrs-run: {e}");
            std::process::exit(2);
        }
    };
    match local::run(&opts) {
        Ok(out) => {
            if let Some(r) = out.reason {
                eprintln!("charmrs-run: {r}");
            }
            std::process::exit(out.code);
        }
        Err(e) => {
            eprintln!("charmrs-run: {e}");
            std::process::exit(1);
        }
    }
}
