//! The pipeline's image recipe and the cache component in it: does a new component version
//! need a new recipe version, and which.

use serde::Serialize;

use crate::arn::{ImageBuilderArn, ResourceKind, parse_exact_version};

/// How the pipeline's recipe refers to the cache component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipeReference {
    /// By a wildcard version such as `x.x.x`: every build takes the latest; nothing to do.
    Wildcard,
    /// By a fixed version: a new component version needs a new recipe version.
    Pinned { index: usize },
}

/// Finds the cache component among a recipe's component ARNs. Names in ARNs are lower case.
pub fn recipe_reference(component_arns: &[&str], component_name: &str) -> Option<RecipeReference> {
    let name = component_name.to_lowercase();
    component_arns.iter().enumerate().find_map(|(index, text)| {
        let arn = ImageBuilderArn::parse(text).ok()?;
        if arn.kind() != ResourceKind::Component || arn.name() != name {
            return None;
        }
        Some(if arn.version().is_some_and(|v| v.is_wildcard()) {
            RecipeReference::Wildcard
        } else {
            RecipeReference::Pinned { index }
        })
    })
}

/// A new recipe version that pins a new component build, and the pipeline pointed at it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecipeChange {
    pub recipe_name: String,
    pub from_version: String,
    pub new_version: String,
    /// Where the cache component sits in the recipe's component list.
    #[serde(skip)]
    pub component_index: usize,
}

/// Why the recipe cannot take a new component version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecipeProblem {
    #[error("the recipe does not use the cache component")]
    ComponentNotInRecipe,
    #[error("the recipe's version {0} is not major.minor.patch")]
    UnreadableVersion(String),
}

/// The recipe as the decision needs it.
#[derive(Debug, Clone, Copy)]
pub struct RecipeFacts<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub component_arns: &'a [&'a str],
}

/// Whether the recipe needs a new version to use `component_build_arn`: only when it pins the
/// component to another build. The new version is the next patch.
pub fn plan_recipe(
    recipe: RecipeFacts<'_>,
    component_name: &str,
    component_build_arn: &str,
) -> Result<Option<RecipeChange>, RecipeProblem> {
    let component_index = match recipe_reference(recipe.component_arns, component_name) {
        None => return Err(RecipeProblem::ComponentNotInRecipe),
        Some(RecipeReference::Wildcard) => return Ok(None),
        Some(RecipeReference::Pinned { index })
            if recipe.component_arns[index] == component_build_arn =>
        {
            return Ok(None);
        }
        Some(RecipeReference::Pinned { index }) => index,
    };
    let current = parse_exact_version(recipe.version)
        .ok_or_else(|| RecipeProblem::UnreadableVersion(recipe.version.to_owned()))?;
    Ok(Some(RecipeChange {
        recipe_name: recipe.name.to_owned(),
        from_version: recipe.version.to_owned(),
        new_version: crate::component::next_version(Some(&current)).to_string(),
        component_index,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WILDCARD: [&str; 2] = [
        "arn:aws:imagebuilder:us-east-1:aws:component/update-windows/x.x.x",
        "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/x.x.x",
    ];
    const PINNED: [&str; 1] =
        ["arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/1.0.3/1"];

    #[test]
    fn recipes_refer_by_wildcard_or_pin() {
        let cases: [(&[&str], &str, Option<RecipeReference>); 5] = [
            (&WILDCARD, "prepull-cache", Some(RecipeReference::Wildcard)),
            (
                &PINNED,
                "Prepull-Cache",
                Some(RecipeReference::Pinned { index: 0 }),
            ),
            (&WILDCARD[..1], "prepull-cache", None),
            (
                &[
                    "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache-other/1.0.0/1",
                ],
                "prepull-cache",
                None,
            ),
            (
                &["arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/1.0.x"],
                "prepull-cache",
                Some(RecipeReference::Wildcard),
            ),
        ];
        for (arns, name, expected) in cases {
            assert_eq!(recipe_reference(arns, name), expected, "{arns:?}");
        }
    }

    #[test]
    fn only_a_pin_to_another_build_needs_a_new_recipe_version() {
        let facts = |arns: &'static [&'static str], version: &'static str| RecipeFacts {
            name: "prepull-recipe",
            version,
            component_arns: arns,
        };
        let new_build =
            "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/1.0.4/1";
        assert_eq!(
            plan_recipe(facts(&WILDCARD, "1.0.0"), "prepull-cache", new_build),
            Ok(None)
        );
        assert_eq!(
            plan_recipe(facts(&PINNED, "1.0.0"), "prepull-cache", PINNED[0]),
            Ok(None)
        );
        assert_eq!(
            plan_recipe(facts(&PINNED, "2021.01.01"), "prepull-cache", new_build),
            Ok(Some(RecipeChange {
                recipe_name: "prepull-recipe".into(),
                from_version: "2021.01.01".into(),
                new_version: "2021.1.2".into(),
                component_index: 0,
            }))
        );
        assert_eq!(
            plan_recipe(facts(&WILDCARD[..1], "1.0.0"), "prepull-cache", new_build),
            Err(RecipeProblem::ComponentNotInRecipe)
        );
        assert!(matches!(
            plan_recipe(facts(&PINNED, "one"), "prepull-cache", new_build),
            Err(RecipeProblem::UnreadableVersion(_))
        ));
    }
}
