# edgeagent A/B boot (Raspberry Pi, U-Boot): picks the root slot with RAUC's variables in uboot.env
# on this partition.  BOOT_ORDER: slots in the order to try ("A B"; RAUC puts a freshly installed slot
# first); BOOT_X_LEFT: boots slot X may still try before it counts as failed (each boot here takes one,
# RAUC's mark-good sets it back to 3, mark-bad to 0).  Compiled to boot.scr by image/build.sh
# (mkimage -T script); U-Boot's distro boot runs it with devtype/devnum set to the card it came from.
test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3
setenv slot
for s in "${BOOT_ORDER}"; do
  if test -z "${slot}"; then
    if test "${s}" = "A" && test ${BOOT_A_LEFT} -gt 0; then
      setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1; setenv slot A; setenv rootpart 2
    elif test "${s}" = "B" && test ${BOOT_B_LEFT} -gt 0; then
      setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1; setenv slot B; setenv rootpart 3
    fi
  fi
done
if test -z "${slot}"; then
  echo "edgeagent: no slot has boots left: trying both again"
  setenv BOOT_A_LEFT 3; setenv BOOT_B_LEFT 3; saveenv; reset
fi
saveenv
echo "edgeagent: booting slot ${slot} (BOOT_ORDER=${BOOT_ORDER} A_LEFT=${BOOT_A_LEFT} B_LEFT=${BOOT_B_LEFT})"
setenv bootargs "@CMDLINE@ root=PARTUUID=@DISKID@-0${rootpart} rauc.slot=${slot}"
# Debian's arm64 /vmlinuz is gzip-compressed: booti inflates it through a scratch area (kernel_comp_*).
# Scratch and initrd sit well above the kernel (U-Boot's defaults leave ~6 MB between kernel and
# initrd) and far below the device tree the firmware put near the top of the first GiB.
setenv kernel_comp_addr_r 0x0a000000
setenv ramdisk_addr_r 0x06000000
load ${devtype} ${devnum}:${rootpart} ${kernel_addr_r} /vmlinuz
setenv kernel_comp_size ${filesize}
load ${devtype} ${devnum}:${rootpart} ${ramdisk_addr_r} /initrd.img
# the firmware loaded the board's device tree (with config.txt's overlays) and passed it on at fdt_addr
booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr}
