use clap::{Arg, Command};
use clap_complete::Shell;

use super::*;

fn command() -> Command {
    Command::new("stripe-router")
        .subcommand(Command::new("serve").arg(Arg::new("config").long("config")))
        .subcommand(Command::new("stripe-standin"))
}

#[test]
fn every_state_the_bash_script_reads_is_one_it_sets() {
    let mut out = Vec::new();
    write(Shell::Bash, &mut command(), "stripe-router", &mut out).unwrap();
    let script = String::from_utf8(out).unwrap();
    assert!(!script.contains("stripe__subcmd__router"), "{script}");
    assert!(
        script.contains(r#"cmd="stripe__router__subcmd__serve""#)
            && script.contains("        stripe__router__subcmd__serve)"),
        "{script}"
    );
    // A hyphen in a subcommand's name is spelled the same on both sides.
    assert!(script.contains("stripe__router__subcmd__stripe__subcmd__standin)"));
}

#[test]
fn a_name_without_a_hyphen_is_left_alone() {
    assert_eq!(repair_bash("a__subcmd__b", "router"), "a__subcmd__b");
}
