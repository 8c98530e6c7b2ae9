#!/bin/bash
# devstack plugin for pcie-sched: install it into nova's environment,
# enable the scheduler filter and the compute driver, measure and publish
# this host's capacity, and configure the tempest plugin.

function pcie_sched_packages {
    # The probe's system packages, as bindep.txt's "probe" profile lists them.
    grep -E '\[.*probe.*\]' "$PCIE_SCHED_DIR/bindep.txt" | awk '{print $1}'
}

function install_pcie_sched {
    # shellcheck disable=SC2046  # one package name per word
    install_package $(pcie_sched_packages)
    # nova-api, nova-scheduler and nova-compute all import pcie-sched.
    setup_develop "$PCIE_SCHED_DIR"
}

function configure_pcie_sched_scheduler {
    local conf=$1
    local filters
    # available_filters is multi-valued: keep nova's own filters and add ours.
    if ! grep -q "^available_filters *= *nova.scheduler.filters.all_filters" "$conf"; then
        iniadd "$conf" filter_scheduler available_filters nova.scheduler.filters.all_filters
    fi
    if ! grep -q "^available_filters *= *$PCIE_SCHED_FILTER" "$conf"; then
        iniadd "$conf" filter_scheduler available_filters "$PCIE_SCHED_FILTER"
    fi
    filters=$(iniget "$conf" filter_scheduler enabled_filters)
    if [[ -z "$filters" ]]; then
        filters="ComputeFilter,ComputeCapabilitiesFilter,ImagePropertiesFilter,ServerGroupAntiAffinityFilter,ServerGroupAffinityFilter"
    fi
    if [[ ",$filters," != *",PciHotplugPortsFilter,"* ]]; then
        iniset "$conf" filter_scheduler enabled_filters "$filters,PciHotplugPortsFilter"
    fi
}

function configure_pcie_sched_compute {
    local conf=$1
    iniset "$conf" DEFAULT compute_driver "$PCIE_SCHED_COMPUTE_DRIVER"
    iniset "$conf" libvirt hw_machine_type "$PCIE_SCHED_MACHINE_TYPE"
    # The driver reports the probe's result only if it reads the directory
    # the probe wrote: both take it from this file.
    iniset "$conf" pcie_sched_probe cache_dir "$PCIE_SCHED_CACHE_DIR"
}

function configure_pcie_sched {
    configure_pcie_sched_scheduler "$NOVA_CONF"
    configure_pcie_sched_compute "${NOVA_CPU_CONF:-$NOVA_CONF}"
}

function measure_and_publish_pcie_sched {
    # nova-compute runs as this user and reads its own config: the probe and
    # publish run as the same user with the same config, so no sudo.
    local conf=${NOVA_CPU_CONF:-$NOVA_CONF}
    if [[ "$PCIE_SCHED_PROBE" == "True" ]]; then
        pcie-sched probe --find-max --config-file "$conf"
    fi
    if [[ "$PCIE_SCHED_PUBLISH" == "True" ]]; then
        pcie-sched publish --config-file "$conf" --cloud devstack-admin \
            --host "$(hostname)"
    fi
}

function configure_tempest_pcie_sched {
    iniset "$TEMPEST_CONFIG" service_available pcie_sched True
    iniset "$TEMPEST_CONFIG" pcie_sched hotplug_ports "$PCIE_SCHED_TEMPEST_PORTS"
}

if [[ "$1" == "stack" && "$2" == "install" ]]; then
    echo_summary "Installing pcie-sched"
    install_pcie_sched
elif [[ "$1" == "stack" && "$2" == "post-config" ]]; then
    echo_summary "Configuring nova for pcie-sched"
    configure_pcie_sched
elif [[ "$1" == "stack" && "$2" == "extra" ]]; then
    echo_summary "Measuring and publishing PCIe hotplug port capacity"
    measure_and_publish_pcie_sched
elif [[ "$1" == "stack" && "$2" == "test-config" ]]; then
    if is_service_enabled tempest; then
        configure_tempest_pcie_sched
    fi
fi
