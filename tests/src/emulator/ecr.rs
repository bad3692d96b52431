//! ECR answers made to read as AWS's where moto's differ.

use serde_json::{Value, json};

/// Rewrites moto's `BatchGetImage` answer into AWS's shape. AWS answers each image ID it finds
/// with an image whose `imageId` names the digest and, for an ID asked by tag, that tag; and
/// each ID it lacks with a failure naming that ID (ECR API Reference, BatchGetImage, and its
/// CLI example). moto names the image's own last tag (wrong for an image with several tags)
/// and names a missing digest as the tag `"null"`.
///
/// moto answers the IDs in the order asked, one image per ID found (a tag or a digest names at
/// most one image of a repository) and a failure per ID lacked, and a missing tag's failure
/// names that tag: so a digest ID is found when an answered image has that digest, and a tag
/// ID when no failure names it.
pub fn batch_get_image_as_aws(params: &Value, moto: &Value) -> Value {
    let empty = Vec::new();
    let asked = params["imageIds"].as_array().unwrap_or(&empty);
    let images = moto["images"].as_array().unwrap_or(&empty);
    let failures = moto["failures"].as_array().unwrap_or(&empty);
    let mut answered = images.iter();
    let mut out_images = Vec::new();
    let mut out_failures = Vec::new();
    for id in asked {
        let found = match (id["imageTag"].as_str(), id["imageDigest"].as_str()) {
            (Some(tag), _) => !failures.iter().any(|f| f["imageId"]["imageTag"] == tag),
            (None, Some(digest)) => images.iter().any(|i| i["imageId"]["imageDigest"] == digest),
            (None, None) => false,
        };
        if !found {
            out_failures.push(json!({
                "imageId": id,
                "failureCode": "ImageNotFound",
                "failureReason": "Requested image not found",
            }));
            continue;
        }
        let Some(image) = answered.next() else { break };
        let mut image = image.clone();
        let mut image_id = json!({"imageDigest": image["imageId"]["imageDigest"]});
        if let Some(tag) = id["imageTag"].as_str() {
            image_id["imageTag"] = json!(tag);
        }
        image["imageId"] = image_id;
        out_images.push(image);
    }
    json!({"images": out_images, "failures": out_failures})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_id_is_answered_as_asked() {
        let params = json!({"imageIds": [
            {"imageTag": "live"},
            {"imageDigest": "sha256:bb"},
            {"imageTag": "gone"},
            {"imageDigest": "sha256:cc"},
        ]});
        // moto: the image under "live" also has the later tag "v2", and names that one.
        let moto = json!({
            "images": [
                {"imageId": {"imageTag": "v2", "imageDigest": "sha256:aa"}, "imageManifest": "{}"},
                {"imageId": {"imageTag": "old", "imageDigest": "sha256:bb"}, "imageManifest": "{}"},
            ],
            "failures": [
                {"imageId": {"imageTag": "gone"}, "failureCode": "ImageNotFound"},
                {"imageId": {"imageTag": "null"}, "failureCode": "ImageNotFound"},
            ],
        });
        let aws = batch_get_image_as_aws(&params, &moto);
        assert_eq!(
            aws["images"][0]["imageId"],
            json!({"imageTag": "live", "imageDigest": "sha256:aa"})
        );
        assert_eq!(
            aws["images"][1]["imageId"],
            json!({"imageDigest": "sha256:bb"})
        );
        assert_eq!(aws["images"][0]["imageManifest"], "{}");
        assert_eq!(
            aws["failures"],
            json!([
                {"imageId": {"imageTag": "gone"}, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"},
                {"imageId": {"imageDigest": "sha256:cc"}, "failureCode": "ImageNotFound", "failureReason": "Requested image not found"},
            ])
        );
    }
}
