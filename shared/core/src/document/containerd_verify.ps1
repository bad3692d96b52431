$ErrorActionPreference = 'Stop'
$ctr = Join-Path $env:ProgramFiles 'containerd\ctr.exe'
$pinned = 'io.cri-containerd.pinned=pinned'
$present = @{}
foreach ($row in (& $ctr -n k8s.io images ls | Select-Object -Skip 1)) { $f = -split $row; $present[$f[0]] = @($f[2], ($f[-1] -split ',')) }
$count = 0
foreach ($line in Get-Content (Join-Path $env:ProgramData 'prepull\cache-manifest.txt')) {
  $f = -split $line
  if ($f.Count -eq 0 -or $f[0] -eq '#') { continue }
  if ($f[0] -eq 'registry') { $registry = $f[1]; continue }
  $name = "$registry/$($f[0])"; $digest = "sha256:$($f[2])"
  foreach ($reference in @("$name@$digest", "${name}:$($f[1])")) {
    $found = $present[$reference]
    if (-not $found -or $found[0] -ne $digest) { throw "prepull: missing from the cache: $reference" }
    if ($found[1] -notcontains $pinned) { throw "prepull: not pinned, so kubelet's image garbage collection may delete it: $reference" }
  }
  $count++
}
Write-Output "prepull: all $count cached images are present with their digest and pinned"
