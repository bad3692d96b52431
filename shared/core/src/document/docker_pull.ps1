$ErrorActionPreference = 'Stop'
function Invoke-Checked([string]$What, [scriptblock]$Command) { & $Command; if ($LASTEXITCODE -ne 0) { throw "prepull: $What failed with exit code $LASTEXITCODE" } }
function Test-Runtime { $ErrorActionPreference = 'Continue'; docker version *> $null; $LASTEXITCODE -eq 0 }
if (-not (Get-Service docker -ErrorAction SilentlyContinue)) { throw 'prepull: this image has no docker service (an EKS parent image needs ContainerRuntime=containerd)' }
if ((Get-Service docker).Status -ne 'Running') { Start-Service docker }
$until = (Get-Date).AddMinutes(5)
while (-not (Test-Runtime)) { if ((Get-Date) -gt $until) { throw 'prepull: Docker did not answer within 5 minutes' }; Start-Sleep -Seconds 5 }
$record = Join-Path $env:ProgramData 'prepull\cache-manifest.txt'
New-Item -ItemType Directory -Force (Split-Path $record) | Out-Null
Set-Content -Path $record -Value $manifest -Encoding ASCII
foreach ($line in $manifest -split "`r?`n") {
  $f = -split $line
  if ($f.Count -eq 0 -or $f[0] -eq '#') { continue }
  if ($f[0] -eq 'registry') {
    $registry = $f[1]; $p = $registry.Split('.')
    $script:password = (Get-ECRLoginCommand -Region $p[3] -RegistryId $p[0]).Password
    Invoke-Checked "docker login $registry" { $script:password | docker login --username AWS --password-stdin $registry | Out-Null }
    continue
  }
  $name = "$registry/$($f[0])"; $digest = "sha256:$($f[2])"; $tag = $f[1]
  Invoke-Checked "pull $name@$digest" { docker pull "$name@$digest" | Out-Null }
  Invoke-Checked "tag ${name}:$tag" { docker tag "$name@$digest" "${name}:$tag" }
}
$script:password = $null
