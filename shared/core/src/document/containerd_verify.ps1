$ErrorActionPreference = 'Stop'
$ctr = Join-Path $env:ProgramFiles 'containerd\ctr.exe'
$present = & $ctr -n k8s.io images ls | Select-Object -Skip 1 | ForEach-Object { $f = -split $_; $f[0] + ' ' + $f[2] }
function Test-CachedImage([string]$Name, [string]$Digest, [string]$Tag) {
  foreach ($reference in @("$Name@$Digest", "${Name}:$Tag")) { if ($present -notcontains "$reference $Digest") { throw "missing from the cache: $reference" } }
}
