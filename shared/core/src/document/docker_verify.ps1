$ErrorActionPreference = 'Stop'
$count = 0
foreach ($line in Get-Content (Join-Path $env:ProgramData 'prepull\cache-manifest.txt')) {
  $f = -split $line
  if ($f.Count -eq 0 -or $f[0] -eq '#') { continue }
  if ($f[0] -eq 'registry') { $registry = $f[1]; continue }
  $name = "$registry/$($f[0])"; $digest = "sha256:$($f[2])"
  $image = docker image inspect "${name}:$($f[1])" | ConvertFrom-Json
  if ($LASTEXITCODE -ne 0 -or $image[0].RepoDigests -notcontains "$name@$digest") { throw "prepull: missing from the cache: ${name}:$($f[1]) at $digest" }
  $count++
}
Write-Output "prepull: all $count cached images are present with their digest"
