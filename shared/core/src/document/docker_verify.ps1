$ErrorActionPreference = 'Stop'
function Test-CachedImage([string]$Name, [string]$Digest, [string]$Tag) {
  $image = docker image inspect "${Name}:$Tag" | ConvertFrom-Json
  if ($LASTEXITCODE -ne 0 -or $image[0].RepoDigests -notcontains "$Name@$Digest") { throw "missing from the cache: ${Name}:$Tag at $Digest" }
}
