"""What the scheduler reads about a request's instance from nova's databases.

A RequestSpec never carries volumes (only ``is_bfv``), on a boot or on a
move, and on a move it does not say how many root ports the guest has.
Both are in nova's databases, read here once per request (never per
host), and only for requests that ask for ports:

* a boot: the instance is not in a cell yet; its block device mappings
  are on its BuildRequest in the API database (one query);
* a move (cold or live migration, resize, evacuation, unshelve): the
  instance is in a cell; its volumes are its block device mappings there
  and its port plan is the record the compute driver keeps in its
  ``system_metadata`` (:mod:`pcie_sched.instance_plan`). One query misses
  the BuildRequest, then the instance mapping, the instance with its
  system metadata and its block device mappings.

Any failure is logged (a warning once per kind of failure and process,
then at debug) and gives :data:`UNKNOWN`: the filter then counts what the
request shows, as it did before it read anything here. Nothing raises.
"""

import typing as ty

from nova import context as nova_context
from nova import exception
from nova import objects
from oslo_log import log as logging

from pcie_sched import block_devices
from pcie_sched import instance_plan

LOG = logging.getLogger(__name__)

VOLUME = 'volume'


class InstanceDevices(ty.NamedTuple):
    #: Root ports the instance's volumes add to the cold-plugged reserve.
    volume_ports: int
    #: The port plan recorded at its first build (moves only), or None.
    recorded: ty.Optional[instance_plan.RecordedPlan]
    #: Whether the instance already exists in a cell (a move).
    move: bool
    #: Whether the lookup answered (False: the request alone decides).
    known: bool = True


UNKNOWN = InstanceDevices(0, None, False, False)

#: Kinds of failure already warned about, bounded: a scheduler that
#: cannot read a database fails the same way on every request.
_WARNED: ty.Set[str] = set()
_WARNED_MAX = 64


class _Unreadable(Exception):
    """The request or nova's records do not let us tell."""


def lookup(spec_obj) -> InstanceDevices:
    """The instance's volumes and recorded plan; never raises."""
    try:
        return _lookup(spec_obj)
    except Exception as exc:  # never let a lookup break scheduling
        _warn_once(spec_obj, exc)
        return UNKNOWN


def reset_warnings() -> None:
    """Forget the failures warned about (tests)."""
    _WARNED.clear()


def _lookup(spec_obj) -> InstanceDevices:
    context = getattr(spec_obj, '_context', None)
    if context is None:
        # nova's scheduler always has one (select_destinations receives
        # the RequestSpec with the request's context); a spec built by
        # hand may not.
        raise _Unreadable('the RequestSpec carries no request context')
    uuid = spec_obj.instance_uuid
    # Read-only, by uuid: an admin's moves and a user's resizes alike.
    context = context.elevated()
    try:
        build_request = objects.BuildRequest.get_by_instance_uuid(
            context, uuid)
    except exception.BuildRequestNotFound:
        pass
    else:
        # A boot: the BuildRequest lives until the instance is created in
        # the cell the scheduler picks.
        return InstanceDevices(
            block_devices.volume_ports(
                _volumes(build_request.block_device_mappings),
                _image(getattr(spec_obj, 'image', None))),
            None, False)
    mapping = objects.InstanceMapping.get_by_instance_uuid(context, uuid)
    if mapping.cell_mapping is None:
        raise _Unreadable('the instance has neither a BuildRequest nor a '
                          'cell')
    with nova_context.target_cell(context, mapping.cell_mapping) as cctxt:
        instance = objects.Instance.get_by_uuid(
            cctxt, uuid, expected_attrs=['system_metadata'])
        bdms = objects.BlockDeviceMappingList.get_by_instance_uuid(
            cctxt, uuid)
    volumes = block_devices.volume_ports(_volumes(bdms),
                                         _image(instance.image_meta))
    try:
        recorded = instance_plan.from_system_metadata(
            instance.system_metadata)
    except instance_plan.UnknownLayout as exc:
        # The destination's driver refuses it anyway; count its devices.
        _warn_once(spec_obj, exc, _UNKNOWN_LAYOUT)
        recorded = None
    return InstanceDevices(volumes, recorded, True)


def _field(obj, name):
    return getattr(obj, name) if obj.obj_attr_is_set(name) else None


def _volumes(bdms) -> ty.List[block_devices.Volume]:
    return [block_devices.Volume(
        boot_index=_field(bdm, 'boot_index'),
        disk_bus=_field(bdm, 'disk_bus'),
        device_type=_field(bdm, 'device_type'),
        device_name=_field(bdm, 'device_name'))
        for bdm in bdms or ()
        if _field(bdm, 'destination_type') == VOLUME]


def _image(image_meta) -> block_devices.Image:
    properties = getattr(image_meta, 'properties', None)
    if properties is None:
        return block_devices.Image()
    return block_devices.Image(
        disk_bus=properties.get('hw_disk_bus'),
        cdrom_bus=properties.get('hw_cdrom_bus'),
        scsi_model=properties.get('hw_scsi_model'),
        architecture=properties.get('hw_architecture'))


_UNREADABLE = (
    'cannot read the volumes and recorded port plan of instance %(uuid)s '
    "from nova's databases (%(error)s); counting only what the request "
    'shows: volumes are not counted, and a move is scheduled against the '
    'estimate rather than the root ports the instance has.')
_UNKNOWN_LAYOUT = (
    'instance %(uuid)s has a port plan this pcie-sched cannot render '
    '(%(error)s); scheduling it against the estimate of its devices.')


def _warn_once(spec_obj, exc, message=_UNREADABLE) -> None:
    kind = f'{type(exc).__module__}.{type(exc).__name__}'
    first = kind not in _WARNED
    if first:
        if len(_WARNED) >= _WARNED_MAX:
            _WARNED.clear()
        _WARNED.add(kind)
    try:
        uuid = spec_obj.instance_uuid
    except Exception:
        uuid = '(unknown)'
    (LOG.warning if first else LOG.debug)(
        'PciHotplugPortsFilter: ' + message + '%(once)s',
        {'uuid': uuid, 'error': f'{type(exc).__name__}: {exc}',
         'once': (' Warned once per kind of failure; later ones are '
                  'logged at debug.' if first else '')})
