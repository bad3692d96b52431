//! The fuzz targets' properties, a few hundred cases each on every test run; `make
//! reliability` runs them for a time budget (see `prepull_bench::fuzz`).

use prepull_bench::fuzz::{self, Grammar};
use proptest::test_runner::{Config, TestRunner};

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    })
}

#[test]
fn the_event_readers_never_panic_on_arbitrary_or_mutated_events() {
    let strategy = fuzz::reader_input(fuzz::reader_fixtures().unwrap());
    runner()
        .run(&strategy, |input| fuzz::readers_never_panic(&input))
        .unwrap();
}

#[test]
fn the_validators_never_accept_a_character_outside_ecrs_grammar() {
    let grammar = Grammar::load().unwrap();
    runner()
        .run(&fuzz::hostile_string(), |value| grammar.check(&value))
        .unwrap();
    // Negative controls: the grammar the check holds prepull to refuses what ECR refuses.
    for (repository, allowed) in [
        ("team/web", true),
        ("Team/web", false),
        ("team//web", false),
        ("team/web;rm", false),
        ("t", false),
    ] {
        assert_eq!(
            grammar.allows_repository(repository),
            allowed,
            "{repository}"
        );
    }
}
