"""Checks the SAM template's EventBridge rules against the event fixtures.

The template is turned into CloudFormation the way AWS does it (the SAM transform), offline,
with parameter values that match the fixtures. The intrinsic
functions the rules use are then resolved, and each rule's event pattern is matched with
moto's implementation of EventBridge's pattern semantics: every fixture the rule is for must
match, and every near miss (another repository, another action or result, another pipeline's
image, a state that is not terminal) must not. The rules' targets, the schedule's input and
the IAM resource lists built from the repository and group names are checked on the way.

Run with the SAM venv: `.venv-sam/bin/python tests/template/check_event_patterns.py [TEMPLATE]`
(template.yaml by default). It exits non-zero, listing every mismatch, when anything is off.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

# The SAM translator looks up the partition through boto3's region.
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

from moto.events.models import EventPattern  # noqa: E402
from samcli.yamlhelper import yaml_parse  # noqa: E402
from samtranslator.translator.managed_policy_translator import ManagedPolicyLoader  # noqa: E402
from samtranslator.translator.transform import transform  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
FIXTURES = ROOT / "tests" / "fixtures"

ACCOUNT = "123456789012"
REGION = "us-east-1"
PSEUDO = {
    "AWS::AccountId": ACCOUNT,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::StackName": "prepull",
    "AWS::StackId": f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/prepull/0",
    "AWS::URLSuffix": "amazonaws.com",
}

# The rules the template must hold, by logical ID after the SAM transform. A rule that is not
# listed here fails the check, so a new one cannot go untested.
ECR_RULE = "EcrPushRule"
BUILD_RULE = "BuildFinishedFunctionBuildState"
ALERT_RULE = "BuildFailedAlertRule"

NO_VALUE = object()


class NoManagedPolicies(ManagedPolicyLoader):
    """The template names no managed policy by name, so nothing is looked up."""

    def __init__(self) -> None:
        pass

    def load(self) -> dict[str, str]:
        return {}


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def variant(name: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    event = copy.deepcopy(fixture(name))
    change(event)
    return event


def set_path(*path_and_value: Any) -> Callable[[dict[str, Any]], None]:
    *path, value = path_and_value

    def change(event: dict[str, Any]) -> None:
        node = event
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


class Resolver:
    """Resolves the intrinsic functions of a translated template for one set of parameters."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str]) -> None:
        self.template = template
        self.values: dict[str, Any] = dict(PSEUDO)
        for name, spec in template.get("Parameters", {}).items():
            raw = parameters.get(name, spec.get("Default"))
            if raw is None:
                raise AssertionError(f"parameter {name} has no default and no test value")
            raw = str(raw)
            self.values[name] = raw.split(",") if spec["Type"] in ("CommaDelimitedList",) or spec[
                "Type"
            ].startswith("List<") else raw
        self.conditions: dict[str, bool] = {}
        for name in template.get("Conditions", {}):
            self.condition(name)

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.resolve(self.template["Conditions"][name]))
        return self.conditions[name]

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()
            handler = self.FUNCTIONS.get(key)
            if handler is not None:
                return handler(self, arg)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.values:
            return self.values[name]
        if name in self.template["Resources"]:
            return f"<ref {name}>"
        raise AssertionError(f"Ref to unknown {name}")

    def get_att(self, arg: Any) -> str:
        logical_id, attribute = arg.split(".", 1) if isinstance(arg, str) else arg
        if logical_id not in self.template["Resources"]:
            raise AssertionError(f"GetAtt of unknown {logical_id}")
        return f"<{logical_id}.{attribute}>"

    def sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return str(variables[name])
            if "." in name and name.split(".", 1)[0] in self.template["Resources"]:
                return self.get_att(name)
            value = self.ref(name)
            if isinstance(value, list):
                raise AssertionError(f"Fn::Sub of the list {name}")
            return str(value)

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    def join(self, arg: Any) -> str:
        delimiter, items = arg
        if not isinstance(delimiter, str):
            raise AssertionError("Fn::Join needs a literal delimiter")
        return delimiter.join(str(item) for item in self.resolve(items))

    def split(self, arg: Any) -> list[str]:
        delimiter, text = arg
        return str(self.resolve(text)).split(delimiter)

    def select(self, arg: Any) -> Any:
        index, items = arg
        return self.resolve(items)[int(self.resolve(index))]

    def if_(self, arg: Any) -> Any:
        name, when_true, when_false = arg
        return self.resolve(when_true if self.condition(name) else when_false)

    def equals(self, arg: Any) -> bool:
        left, right = self.resolve(arg)
        return str(left) == str(right)

    FUNCTIONS: dict[str, Callable[["Resolver", Any], Any]] = {
        "Ref": ref,
        "Fn::GetAtt": get_att,
        "Fn::Sub": sub,
        "Fn::Join": join,
        "Fn::Split": split,
        "Fn::Select": select,
        "Fn::If": if_,
        "Fn::Equals": equals,
        "Fn::Not": lambda self, arg: not self.resolve(arg[0]),
        "Fn::And": lambda self, arg: all(self.resolve(arg)),
        "Fn::Or": lambda self, arg: any(self.resolve(arg)),
        "Condition": lambda self, arg: self.condition(arg),
    }


def to_cloudformation(template_path: Path, parameters: dict[str, str]) -> dict[str, Any]:
    """The template as CloudFormation sees it after both transforms."""
    template = yaml_parse(template_path.read_text())
    # As after `sam build && sam package`: the code is an uploaded artifact.
    template["Globals"]["Function"]["CodeUri"] = "s3://prepull-artifacts/bootstrap.zip"
    return transform(template, {**PSEUDO, **parameters}, NoManagedPolicies())


class Check:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0

    def expect(self, ok: bool, what: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.failures.append(what)


def check_scenario(check: Check, template_path: Path, label: str, parameters: dict[str, str]) -> None:
    cfn = to_cloudformation(template_path, parameters)
    resolver = Resolver(cfn, parameters)
    resources = cfn["Resources"]

    def active(logical_id: str) -> bool:
        condition = resources[logical_id].get("Condition")
        return condition is None or resolver.condition(condition)

    rules = {
        logical_id: resolver.resolve(resource["Properties"])
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::Events::Rule" and active(logical_id)
    }
    check.expect(
        sorted(rules) == sorted([ECR_RULE, BUILD_RULE, ALERT_RULE]),
        f"{label}: the rules are {sorted(rules)}, expected {sorted([ECR_RULE, BUILD_RULE, ALERT_RULE])}",
    )
    patterns = {
        logical_id: EventPattern.load(json.dumps(props["EventPattern"]))
        for logical_id, props in rules.items()
    }

    def expect_match(rule: str, event: dict[str, Any], should: bool, what: str) -> None:
        if rule not in patterns:
            return
        matched = patterns[rule].matches_event(event)
        check.expect(
            matched == should,
            f"{label}: {rule} {'should match' if should else 'must not match'} {what}"
            f"\n    pattern: {json.dumps(rules[rule]['EventPattern'])}",
        )

    # Targets: each rule feeds what it is for, with a dead-letter queue for undelivered events.
    def target_arns(rule: str) -> list[str]:
        return [target["Arn"] for target in rules.get(rule, {}).get("Targets", [])]

    check.expect(target_arns(ECR_RULE) == ["<ImagePushedQueue.Arn>"], f"{label}: {ECR_RULE} feeds the push queue")
    check.expect(
        target_arns(BUILD_RULE) == ["<BuildFinishedFunction.Arn>"], f"{label}: {BUILD_RULE} invokes build-finished"
    )
    check.expect(target_arns(ALERT_RULE) == ["<ref AlertsTopic>"], f"{label}: {ALERT_RULE} publishes to the topic")
    for rule in rules:
        for target in rules[rule].get("Targets", []):
            check.expect(
                target.get("DeadLetterConfig", {}).get("Arn") == "<DeliveryDeadLetterQueue.Arn>",
                f"{label}: {rule} has the delivery dead-letter queue",
            )

    watched = resolver.values["WatchedRepositories"].split(",")
    recipe = resolver.values["RecipeName"]

    # ECR pushes.
    for repository in watched:
        expect_match(
            ECR_RULE,
            variant("ecr-push.json", set_path("detail", "repository-name", repository)),
            True,
            f"a successful push to the watched repository {repository}",
        )
    expect_match(ECR_RULE, fixture("ecr-push.json"), "team/web" in watched, "ecr-push.json")
    # A push by digest alone reaches image-pushed, which ignores it with a log line.
    expect_match(ECR_RULE, fixture("ecr-push-by-digest.json"), "team/web" in watched, "ecr-push-by-digest.json")
    # A deletion may take a watched tag away: image-pushed lets ECR decide what stays.
    expect_match(ECR_RULE, fixture("ecr-delete.json"), "team/web" in watched, "ecr-delete.json (DELETE)")
    expect_match(
        ECR_RULE,
        variant("ecr-delete.json", set_path("detail", "result", "FAILURE")),
        False,
        "a failed deletion",
    )
    expect_match(ECR_RULE, fixture("ecr-push-failed.json"), False, "ecr-push-failed.json (result FAILURE)")
    for other in ("team/other", "team/web-canary", "team", "web"):
        expect_match(
            ECR_RULE,
            variant("ecr-push.json", set_path("detail", "repository-name", other)),
            False,
            f"a push to the unwatched repository {other}",
        )
    expect_match(
        ECR_RULE,
        variant("ecr-push.json", set_path("detail-type", "ECR Image Scan")),
        False,
        "another ECR event type",
    )
    expect_match(ECR_RULE, fixture("imagebuilder-available.json"), False, "an Image Builder event")
    # What the queue receives is the event itself: the SQS fixtures carry it as their body.
    for name in ("ecr-push", "ecr-delete", "ecr-push-failed", "ecr-push-by-digest"):
        body = json.loads(fixture(f"sqs-{name}.json")["Records"][0]["body"])
        check.expect(body == fixture(f"{name}.json"), f"sqs-{name}.json carries {name}.json as its body")

    # Image Builder state changes.
    image = f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image/{recipe}/1.0.0/1"

    def build(name: str, status: str | None = None, arn: str | None = None) -> dict[str, Any]:
        event = fixture(name)
        event["resources"] = [arn or image]
        if status:
            event["detail"]["state"]["status"] = status
        return event

    ours = recipe == "prepull-windows-cache"
    expect_match(BUILD_RULE, fixture("imagebuilder-available.json"), ours, "imagebuilder-available.json")
    expect_match(BUILD_RULE, fixture("imagebuilder-failed.json"), ours, "imagebuilder-failed.json")
    expect_match(BUILD_RULE, fixture("imagebuilder-building.json"), False, "imagebuilder-building.json (BUILDING)")
    expect_match(ALERT_RULE, fixture("imagebuilder-failed.json"), ours, "imagebuilder-failed.json")
    expect_match(ALERT_RULE, fixture("imagebuilder-available.json"), False, "imagebuilder-available.json")
    expect_match(ALERT_RULE, fixture("imagebuilder-building.json"), False, "imagebuilder-building.json")
    for status in ("AVAILABLE", "FAILED", "CANCELLED"):
        expect_match(BUILD_RULE, build("imagebuilder-available.json", status), True, f"this recipe's image {status}")
    for status in ("FAILED", "CANCELLED"):
        expect_match(ALERT_RULE, build("imagebuilder-failed.json", status), True, f"this recipe's image {status}")
    for status in ("PENDING", "CREATING", "BUILDING", "TESTING", "DISTRIBUTING", "INTEGRATING", "DEPRECATED", "DELETED"):
        for rule in (BUILD_RULE, ALERT_RULE):
            expect_match(rule, build("imagebuilder-building.json", status), False, f"this recipe's image {status}")
    near_misses = {
        "another pipeline's recipe": f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image/other-recipe/1.0.0/1",
        "a recipe whose name extends this one": f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image/{recipe}-2/1.0.0/1",
        "this recipe in another account": f"arn:aws:imagebuilder:{REGION}:210987654321:image/{recipe}/1.0.0/1",
        "this recipe in another region": f"arn:aws:imagebuilder:eu-west-1:{ACCOUNT}:image/{recipe}/1.0.0/1",
    }
    for what, arn in near_misses.items():
        expect_match(BUILD_RULE, build("imagebuilder-available.json", arn=arn), False, f"{what}'s image AVAILABLE")
        expect_match(ALERT_RULE, build("imagebuilder-failed.json", arn=arn), False, f"{what}'s image FAILED")
    expect_match(
        BUILD_RULE,
        variant("imagebuilder-available.json", set_path("source", "aws.ecr")),
        False,
        "the state change from another source",
    )

    # The schedule invokes patch-day with exactly the scheduler fixture.
    schedules = [
        resolver.resolve(resource["Properties"])
        for resource in resources.values()
        if resource["Type"] == "AWS::Scheduler::Schedule"
    ]
    check.expect(len(schedules) == 1, f"{label}: one schedule, found {len(schedules)}")
    for schedule in schedules:
        target = schedule["Target"]
        check.expect(target["Arn"] == "<PatchDayFunction.Arn>", f"{label}: the schedule invokes patch-day")
        check.expect(
            json.loads(target["Input"]) == fixture("scheduler-patch-day.json"),
            f"{label}: the schedule's input is scheduler-patch-day.json",
        )
        check.expect(
            target.get("DeadLetterConfig", {}).get("Arn") == "<DeliveryDeadLetterQueue.Arn>"
            and "RetryPolicy" in target,
            f"{label}: the schedule has a retry policy and a dead-letter queue",
        )

    # PauseRebuilds stops exactly the two rebuild triggers, and nothing else.
    paused = parameters.get("PauseRebuilds") == "true"
    for schedule in schedules:
        state = schedule.get("State", "ENABLED")
        check.expect(
            state == ("DISABLED" if paused else "ENABLED"), f"{label}: the schedule is {state} (paused: {paused})"
        )
    mappings = [
        resolver.resolve(resource["Properties"])
        for resource in resources.values()
        if resource["Type"] == "AWS::Lambda::EventSourceMapping"
    ]
    check.expect(len(mappings) == 1, f"{label}: one event source mapping, found {len(mappings)}")
    for mapping in mappings:
        enabled = mapping.get("Enabled", True)
        check.expect(enabled is not paused, f"{label}: the push queue's mapping is enabled={enabled} (paused: {paused})")
    check.expect(
        rules.get(BUILD_RULE, {}).get("State", "ENABLED") == "ENABLED",
        f"{label}: build-finished keeps receiving build events while paused",
    )

    # The functions drive the right pipeline.
    existing = resolver.values["ExistingPipelineArn"]
    for function in ("ImagePushedFunction", "PatchDayFunction", "BuildFinishedFunction"):
        env = resolver.resolve(resources[function]["Properties"]["Environment"]["Variables"])
        expected = existing or "<ref Pipeline>"
        check.expect(env["PREPULL_PIPELINE_ARN"] == expected, f"{label}: {function} drives {expected}")
        check.expect(
            env["PREPULL_IMAGES"] == ",".join(resolver.values["WatchedImages"]),
            f"{label}: {function} watches WatchedImages",
        )
    check.expect(active("Pipeline") == (existing == ""), f"{label}: the pipeline is created only without ExistingPipelineArn")

    # The lists of names become exactly one ARN per name (they are built item by item).
    def statement(policy: dict[str, Any], sid: str) -> dict[str, Any] | None:
        return next((st for st in policy["Statement"] if st.get("Sid") == sid), None)

    repositories = [f"arn:aws:ecr:{REGION}:{ACCOUNT}:repository/{name}" for name in watched]
    digests = statement(resolver.resolve(resources["ReadAndBuildPolicy"]["Properties"]["PolicyDocument"]), "ReadWatchedDigests")
    check.expect(
        digests is not None and digests["Resource"] == repositories,
        f"{label}: the functions may describe exactly {repositories}, got {digests and digests['Resource']}",
    )
    if active("BuildInstanceRole"):
        policy = resolver.resolve(resources["BuildInstanceRole"]["Properties"]["Policies"][0]["PolicyDocument"])
        pulls = statement(policy, "PullWatchedImages")
        check.expect(
            pulls is not None and pulls["Resource"] == repositories,
            f"{label}: the build instance may pull exactly {repositories}, got {pulls and pulls['Resource']}",
        )
    # AWS advises a reserved concurrency no lower than the SQS event source's MaximumConcurrency
    # ("Configuring scaling behavior for SQS event source mappings"): below it, received
    # batches are throttled back to the queue and count toward maxReceiveCount.
    function = resolver.resolve(resources["ImagePushedFunction"]["Properties"])
    for logical_id, resource in resources.items():
        if resource["Type"] != "AWS::Lambda::EventSourceMapping":
            continue
        mapping = resolver.resolve(resource["Properties"])
        maximum = mapping.get("ScalingConfig", {}).get("MaximumConcurrency")
        reserved = function.get("ReservedConcurrentExecutions")
        check.expect(
            maximum is not None and (reserved is None or int(reserved) >= int(maximum)),
            f"{label}: image-pushed reserves {reserved}, below its queue's MaximumConcurrency {maximum}",
        )
    # EC2 Fast Launch on every distribution exactly when asked for, with its settings.
    if active("DistributionConfiguration"):
        distributions = resolver.resolve(resources["DistributionConfiguration"]["Properties"])["Distributions"]
        wanted = resolver.values.get("FastLaunch", "false") == "true"
        for distribution in distributions:
            fast = distribution.get("FastLaunchConfigurations")
            if not wanted:
                check.expect(fast is None, f"{label}: no Fast Launch in {distribution['Region']} unless FastLaunch=true")
                continue
            expected = {
                "Enabled": True,
                "AccountId": ACCOUNT,
                "MaxParallelLaunches": int(resolver.values.get("FastLaunchParallelLaunches", 6)),
                "SnapshotConfiguration": {"TargetResourceCount": int(resolver.values.get("FastLaunchSnapshots", 5))},
            }
            template_id = resolver.values.get("FastLaunchLaunchTemplateId", "")
            if template_id and distribution["Region"] == REGION:
                expected["LaunchTemplate"] = {"LaunchTemplateId": template_id}
            got = fast[0] if fast else None
            if got is not None:
                got = {**got, "MaxParallelLaunches": int(got["MaxParallelLaunches"]),
                       "SnapshotConfiguration": {"TargetResourceCount": int(got["SnapshotConfiguration"]["TargetResourceCount"])}}
            check.expect(
                fast is not None and len(fast) == 1 and got == expected,
                f"{label}: Fast Launch in {distribution['Region']} is {expected}, got {fast}",
            )
    # An existing pipeline's execution role is passable exactly when it is given.
    write = resolver.resolve(resources["WriteComponentPolicy"]["Properties"]["PolicyDocument"])
    passing = statement(write, "PassPipelineExecutionRole")
    role = resolver.values.get("ExistingPipelineExecutionRoleArn", "")
    if existing and role:
        check.expect(
            passing is not None
            and passing["Action"] == "iam:PassRole"
            and passing["Resource"] == role
            and passing["Condition"] == {"StringEquals": {"iam:PassedToService": "imagebuilder.amazonaws.com"}},
            f"{label}: the functions may pass {role} to Image Builder only, got {passing}",
        )
    else:
        check.expect(passing is None, f"{label}: no role is passable without ExistingPipelineExecutionRoleArn, got {passing}")
    groups = [name for name in resolver.values["AsgNames"].split(",") if name]
    policy = resolver.resolve(resources["BuildFinishedRole"]["Properties"]["Policies"][0]["PolicyDocument"])
    refresh = statement(policy, "RefreshNamedGroups")
    expected_groups = [
        f"arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:*:autoScalingGroupName/{name}" for name in groups
    ]
    check.expect(
        (refresh["Resource"] if refresh else []) == expected_groups,
        f"{label}: build-finished may refresh exactly {expected_groups}, got {refresh and refresh['Resource']}",
    )


def main() -> int:
    # The translator's metrics warnings are noise here.
    logging.disable(logging.WARNING)
    template_path = Path(sys.argv[1]) if len(sys.argv) > 1 else TEMPLATE
    check = Check()
    check_scenario(
        check,
        template_path,
        "defaults, one watched repository",
        {"WatchedRepositories": "team/web", "WatchedImages": "team/web:v42"},
    )
    check_scenario(
        check,
        template_path,
        "an existing pipeline, two watched repositories and groups",
        {
            "WatchedRepositories": "team/api,team/web,a,b,c,d,e,f,g,h",
            "WatchedImages": "team/api:v7,team/web:v42,210987654321.dkr.ecr.eu-west-1.amazonaws.com/sidecar/fluent-bit:3.1-ltsc2022",
            "OtherRepositoryArns": "arn:aws:ecr:eu-west-1:210987654321:repository/sidecar/fluent-bit",
            "ExistingPipelineArn": f"arn:aws:imagebuilder:{REGION}:{ACCOUNT}:image-pipeline/prepull-windows-cache",
            "ExistingPipelineExecutionRoleArn": f"arn:aws:iam::{ACCOUNT}:role/ImageBuilderExecution",
            "AsgNames": "eks-windows-a,eks-windows-b",
            "DistributionRegions": "eu-west-1,us-west-2",
        },
    )
    check_scenario(
        check,
        template_path,
        "another recipe name",
        {"WatchedRepositories": "team/web", "WatchedImages": "team/web:v42", "RecipeName": "windows-cache-b"},
    )
    check_scenario(
        check,
        template_path,
        "EC2 Fast Launch in two regions",
        {
            "WatchedRepositories": "team/web",
            "WatchedImages": "team/web:v42",
            "DistributionRegions": "eu-west-1",
            "FastLaunch": "true",
            "FastLaunchSnapshots": "10",
            "FastLaunchParallelLaunches": "8",
            "FastLaunchLaunchTemplateId": "lt-0123456789abcdef0",
        },
    )
    check_scenario(
        check,
        template_path,
        "rebuilds paused",
        {"WatchedRepositories": "team/web", "WatchedImages": "team/web:v42", "PauseRebuilds": "true"},
    )
    for failure in check.failures:
        print(f"FAIL {failure}", file=sys.stderr)
    print(f"event patterns: {check.passed} checks passed, {len(check.failures)} failed")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
