$ErrorActionPreference = 'Stop'
$ctr = Join-Path $env:ProgramFiles 'containerd\ctr.exe'
function Invoke-Checked([string]$What, [scriptblock]$Command) { & $Command; if ($LASTEXITCODE -ne 0) { throw "$What failed with exit code $LASTEXITCODE" } }
function Connect-Registry([string]$Region, [string]$Account, [string]$Registry) { $script:password = (Get-ECRLoginCommand -Region $Region -RegistryId $Account).Password }
function Save-CachedImage([string]$Name, [string]$Digest, [string]$Tag) {
  Invoke-Checked "pull $Name@$Digest" { & $ctr -n k8s.io images pull --user ('AWS:' + $script:password) "$Name@$Digest" | Out-Null }
  Invoke-Checked "tag ${Name}:$Tag" { & $ctr -n k8s.io images tag --force "$Name@$Digest" "${Name}:$Tag" | Out-Null }
}
