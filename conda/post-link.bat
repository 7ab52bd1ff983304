@echo off
rem conda requires post-link scripts for every platform of a noarch package; ssd's server runs on POSIX only.
>> "%PREFIX%\.messages.txt" echo ssd is installed in %PREFIX%; its server (ssd install) runs on Linux only.
