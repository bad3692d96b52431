$ErrorActionPreference = 'Stop'
function Invoke-Checked([string]$What, [scriptblock]$Command) { & $Command; if ($LASTEXITCODE -ne 0) { throw "$What failed with exit code $LASTEXITCODE" } }
function Connect-Registry([string]$Region, [string]$Account, [string]$Registry) {
  $script:password = (Get-ECRLoginCommand -Region $Region -RegistryId $Account).Password
  Invoke-Checked "docker login $Registry" { $script:password | docker login --username AWS --password-stdin $Registry | Out-Null }
}
function Save-CachedImage([string]$Name, [string]$Digest, [string]$Tag) {
  Invoke-Checked "pull $Name@$Digest" { docker pull "$Name@$Digest" | Out-Null }
  Invoke-Checked "tag ${Name}:$Tag" { docker tag "$Name@$Digest" "${Name}:$Tag" }
}
