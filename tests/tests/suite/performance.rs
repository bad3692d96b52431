//! What `make benchmark` reports that is exact, not timed: each scenario's AWS calls against
//! its floor, and how pushes coalesce into builds. The benchmark runs the same code; these
//! tests keep it true between runs.

use prepull_bench::benchmark::{
    WATCHED_IMAGES, WATCHED_REPOSITORIES, call_counts, coalescing, document_sizes,
};

#[tokio::test]
async fn every_scenario_makes_its_floor_plus_one_named_reason_per_extra_call() {
    let counts = call_counts().await.unwrap();
    let scenarios: Vec<&str> = counts.iter().map(|c| c.scenario.as_str()).collect();
    assert_eq!(
        scenarios,
        [
            "changed push",
            "duplicate push",
            "AVAILABLE event (2 regions, 2 groups)",
            "50-push burst",
            "scheduled run, up to date",
            "forced run",
        ]
    );
    for count in &counts {
        assert_eq!(
            count.calls,
            count.floor + count.above_floor.len(),
            "{}: {:?} against a floor of {} and the reasons {:#?}",
            count.scenario,
            count.operations,
            count.floor,
            count.above_floor
        );
    }
    // ECR is read at most once per repository, however many watched images it holds.
    for count in &counts {
        let ecr_reads = count
            .operations
            .iter()
            .filter(|o| *o == "BatchGetImage")
            .count();
        assert!(
            ecr_reads <= WATCHED_REPOSITORIES,
            "{}: {ecr_reads} ECR reads for {WATCHED_IMAGES} images in {WATCHED_REPOSITORIES} repositories",
            count.scenario
        );
        assert!(!count.operations.iter().any(|o| o == "DescribeImages"));
    }
    // The changed push reads the component state once: one ListComponents, and one
    // ListComponentBuildVersions for the latest version plus the one probe for the next. The
    // published AMI's manifest (the push-to-AMI latency tag) is read from its build `/1`
    // without listing.
    let changed = &counts[0];
    let of = |operation: &str| {
        changed
            .operations
            .iter()
            .filter(|o| *o == operation)
            .count()
    };
    assert_eq!(of("ListComponents"), 1);
    assert_eq!(of("ListComponentBuildVersions"), 2);
    assert_eq!(of("StartImagePipelineExecution"), 1);
}

#[tokio::test]
async fn bursts_and_pushes_during_a_build_make_one_build_and_at_most_one_follow_up() {
    let results = coalescing().await.unwrap();
    let cases: Vec<(usize, usize, usize)> = results
        .iter()
        .map(|c| (c.pushes, c.builds, c.follow_ups))
        .collect();
    assert_eq!(
        cases,
        [
            (1, 1, 0),
            (10, 1, 0),
            (50, 1, 0),
            (500, 1, 0),
            // The pushes after the first changed the manifest while it built: one follow-up.
            (20, 1, 1),
        ]
    );
}

#[test]
fn a_hundred_typical_images_fit_in_one_component() {
    let sizes = document_sizes().unwrap();
    let counts: Vec<usize> = sizes.iter().map(|s| s.images).collect();
    assert_eq!(counts[..4], [1, 10, 50, 100]);
    let most = *counts.last().unwrap();
    assert!(most >= 100, "{most} fit");
    for size in &sizes {
        assert!(
            size.containerd <= prepull::core::document::DOCUMENT_LIMIT
                && size.docker <= prepull::core::document::DOCUMENT_LIMIT,
            "{size:?}"
        );
    }
    assert!(sizes[1].containerd < sizes[2].containerd && sizes[2].containerd < sizes[3].containerd);
}
