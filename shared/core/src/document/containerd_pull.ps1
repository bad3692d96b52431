$ErrorActionPreference = 'Stop'
$ctr = Join-Path $env:ProgramFiles 'containerd\ctr.exe'
$pinned = 'io.cri-containerd.pinned=pinned'
function Invoke-Checked([string]$What, [scriptblock]$Command) { & $Command; if ($LASTEXITCODE -ne 0) { throw "prepull: $What failed with exit code $LASTEXITCODE" } }
function Test-Runtime { $ErrorActionPreference = 'Continue'; & $ctr version *> $null; $LASTEXITCODE -eq 0 }
if (-not (Get-Service containerd -ErrorAction SilentlyContinue)) { throw 'prepull: this image has no containerd service (an ECS parent image needs ContainerRuntime=docker)' }
if ((Get-Service containerd).Status -ne 'Running') { Start-Service containerd }
$until = (Get-Date).AddMinutes(5)
while (-not (Test-Runtime)) { if ((Get-Date) -gt $until) { throw 'prepull: containerd did not answer within 5 minutes' }; Start-Sleep -Seconds 5 }
$record = Join-Path $env:ProgramData 'prepull\cache-manifest.txt'
New-Item -ItemType Directory -Force (Split-Path $record) | Out-Null
Set-Content -Path $record -Value $manifest -Encoding ASCII
foreach ($line in $manifest -split "`r?`n") {
  $f = -split $line
  if ($f.Count -eq 0 -or $f[0] -eq '#') { continue }
  if ($f[0] -eq 'registry') { $registry = $f[1]; $p = $registry.Split('.'); $script:password = (Get-ECRLoginCommand -Region $p[3] -RegistryId $p[0]).Password; continue }
  $name = "$registry/$($f[0])"; $digest = "sha256:$($f[2])"; $tag = $f[1]
  Invoke-Checked "pull $name@$digest" { & $ctr -n k8s.io images pull --label $pinned --user ('AWS:' + $script:password) "$name@$digest" | Out-Null }
  Invoke-Checked "tag ${name}:$tag" { & $ctr -n k8s.io images tag --force "$name@$digest" "${name}:$tag" | Out-Null }
  Invoke-Checked "pin ${name}:$tag" { & $ctr -n k8s.io images label "${name}:$tag" $pinned | Out-Null }
}
$script:password = $null
