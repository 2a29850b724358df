#![doc = include_str!("../README.md")]
// A benchmark harness prints its results: that is its whole output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod measure;
mod noledger;
mod overhead;
mod poll;
mod report;
mod scale;
mod serve;
mod setup;

use measure::{Args, Res};

fn main() {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        eprintln!(
            "usage: genroute-bench <serve|overhead|scale|poll|report> [--option value ...] (see README.md)"
        );
        std::process::exit(2);
    }
    let part = argv.remove(0);
    let args = Args(argv);
    let result: Res<()> = match part.as_str() {
        "serve" => serve::run(&args),
        "overhead" => overhead::run(&args),
        "scale" => scale::run(&args),
        "poll" => poll::run(&args),
        "report" => report::run(&args),
        other => Err(format!("unknown part {other:?}").into()),
    };
    if let Err(e) = result {
        eprintln!("genroute-bench {part}: {e}");
        std::process::exit(1);
    }
}
