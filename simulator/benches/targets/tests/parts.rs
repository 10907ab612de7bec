//! Tests of `parts.rs`.

use clap::ValueEnum;

use crate::parts::*;

#[test]
fn every_part_by_default_in_running_order() {
    assert_eq!(chosen(&[], &[]).unwrap(), Part::ALL.to_vec());
}

#[test]
fn only_keeps_the_running_order_and_skip_removes() {
    assert_eq!(
        chosen(&[Part::Smoke, Part::Sat], &[]).unwrap(),
        vec![Part::Sat, Part::Smoke]
    );
    let rest = chosen(&[], &[Part::SeedNode, Part::Delay]).unwrap();
    assert_eq!(rest.len(), Part::ALL.len() - 2);
    assert!(!rest.contains(&Part::SeedNode) && !rest.contains(&Part::Delay));
}

#[test]
fn contradictions_and_empty_choices_are_errors() {
    assert!(
        chosen(&[Part::Sat], &[Part::Sat])
            .unwrap_err()
            .contains("sat")
    );
    assert!(chosen(&[], &Part::ALL).is_err());
}

#[test]
fn names_match_the_command_line_spelling() {
    for p in Part::ALL {
        assert_eq!(Part::from_str(p.name(), false).unwrap(), p);
    }
}
