"""A host's hotplug port capacity as Placement traits.

Trait scheme (every trait pcie-sched owns starts with
:data:`TRAIT_PREFIX`; nothing else is ever removed):

``CUSTOM_PCIE_HOTPLUG_PORTS_GE_<n>``
    one per step ``n`` of :data:`LADDER` that the host reaches: the host
    boots guests with at least ``n`` root ports. A flavor can require a
    minimum without the filter: ``trait:CUSTOM_PCIE_HOTPLUG_PORTS_GE_32=
    required``. Pick the step at or above the guest's requested free ports
    plus its cold-plugged reserve.
``CUSTOM_PCIE_HOTPLUG_PORTS_MAX_<n>``
    the exact capacity, so ``openstack resource provider trait list``
    shows an operator what each host boots.

The ladder is coarse on purpose: each step is a trait every flavor and
every provider must agree on, and Placement's trait table is global.

Publishing is a read-modify-write guarded by the provider generation:
read the traits and generation, replace only our stale traits, write with
that generation, and on 409 (someone else wrote in between) read again.
"""

import time
import typing as ty

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

TRAIT_PREFIX = 'CUSTOM_PCIE_HOTPLUG_PORTS_'
LADDER = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 160, 192, 224, 255)
#: Placement microversion with traits on providers (1.6) and name filters.
MICROVERSION = '1.6'
DEFAULT_RETRIES = 5
DEFAULT_TIMEOUT = 30.0


class PublishError(RuntimeError):
    """Publishing failed; the message says where and why."""


def minimum_trait(ports: int) -> str:
    return f'{TRAIT_PREFIX}GE_{ports}'


def exact_trait(ports: int) -> str:
    return f'{TRAIT_PREFIX}MAX_{ports}'


def traits_for_capacity(max_ports: int) -> ty.FrozenSet[str]:
    """Every trait a host that boots ``max_ports`` root ports carries."""
    if isinstance(max_ports, bool) or not isinstance(max_ports, int) or (
            max_ports < 0):
        raise ValueError(f'max_ports={max_ports!r}; accepted: a '
                         f'non-negative integer')
    traits = {exact_trait(max_ports)}
    traits.update(minimum_trait(step) for step in LADDER
                  if step <= max_ports)
    return frozenset(traits)


def owned(trait: str) -> bool:
    return trait.startswith(TRAIT_PREFIX)


def merge(current: ty.Iterable[str], wanted: ty.Iterable[str]
          ) -> ty.FrozenSet[str]:
    """Foreign traits stay; ours become exactly ``wanted``."""
    return frozenset(t for t in current if not owned(t)) | frozenset(wanted)


def connect(cloud: ty.Optional[str] = None, **options):
    """A Placement adapter from clouds.yaml / OS_* settings (openstacksdk).

    :raises PublishError: the cloud is not configured or Placement cannot
        be reached (the message names the endpoint when known).
    """
    from keystoneauth1 import exceptions as ks_exceptions
    import openstack
    try:
        connection = openstack.connect(cloud=cloud, **options)
        return connection.placement
    except (openstack.exceptions.SDKException,
            ks_exceptions.ClientException) as exc:
        endpoint = options.get('auth', {}).get('endpoint') or cloud or (
            'the configured cloud')
        raise PublishError(f'cannot reach Placement at {endpoint}: '
                           f'{exc}') from exc


def _request(adapter, method: str, url: str, **kwargs):
    from keystoneauth1 import exceptions as ks_exceptions
    try:
        return adapter.request(url, method, microversion=MICROVERSION,
                               raise_exc=False, timeout=DEFAULT_TIMEOUT,
                               **kwargs)
    except ks_exceptions.ConnectFailure as exc:
        raise PublishError(f'cannot reach Placement for {method} {url}: '
                           f'{exc}') from exc
    except ks_exceptions.ConnectTimeout as exc:
        raise PublishError(f'Placement timed out on {method} {url}: '
                           f'{exc}') from exc
    except ks_exceptions.ClientException as exc:
        raise PublishError(f'Placement request {method} {url} failed: '
                           f'{exc}') from exc


def _check(response, what: str) -> None:
    if response.status_code in (401, 403):
        raise PublishError(f'Placement refused {what}: HTTP '
                           f'{response.status_code} (check the credentials '
                           f'and that the user has the admin role)')
    if response.status_code >= 400:
        raise PublishError(f'Placement refused {what}: HTTP '
                           f'{response.status_code} {response.text[:300]}')


def find_provider(adapter, name: str) -> str:
    """UUID of the resource provider called ``name`` (the compute node)."""
    response = _request(adapter, 'GET', '/resource_providers',
                        params={'name': name})
    _check(response, f'listing resource providers named {name!r}')
    providers = response.json().get('resource_providers', [])
    if len(providers) != 1:
        raise PublishError(f'host={name!r}: expected one resource provider '
                           f'with that name, found {len(providers)}; '
                           f'accepted: the compute node name nova-compute '
                           f'registered (its hypervisor hostname)')
    return providers[0]['uuid']


def ensure_traits(adapter, traits: ty.Iterable[str]) -> None:
    """Custom traits must exist before a provider can carry them."""
    for trait in sorted(traits):
        response = _request(adapter, 'PUT', f'/traits/{trait}')
        _check(response, f'creating trait {trait}')


def publish(adapter, provider_uuid: str, max_ports: int, *,
            retries: int = DEFAULT_RETRIES,
            before_write: ty.Optional[ty.Callable[[], None]] = None
            ) -> ty.Dict[str, ty.Any]:
    """Make the provider's pcie-sched traits describe ``max_ports``.

    :param adapter: a keystoneauth adapter for Placement, such as
        ``openstack.connect(...).placement``.
    :param before_write: called between the read and the write; tests
        use it to race another writer.
    :returns: what was added and removed, and whether anything changed.
    :raises PublishError: Placement is unreachable, refuses, or kept
        changing for ``retries`` attempts.
    """
    wanted = traits_for_capacity(max_ports)
    ensure_traits(adapter, wanted)
    url = f'/resource_providers/{provider_uuid}/traits'
    for attempt in range(1, retries + 1):
        response = _request(adapter, 'GET', url)
        _check(response, f'reading the traits of provider {provider_uuid}')
        body = response.json()
        current = frozenset(body['traits'])
        target = merge(current, wanted)
        summary = {'provider': provider_uuid, 'max_ports': max_ports,
                   'added': sorted(target - current),
                   'removed': sorted(current - target),
                   'attempts': attempt}
        if target == current:
            summary['changed'] = False
            return summary
        if before_write is not None:
            before_write()
        response = _request(adapter, 'PUT', url, json={
            'traits': sorted(target),
            'resource_provider_generation':
                body['resource_provider_generation']})
        if response.status_code == 409:
            LOG.info('Provider %s changed while publishing its hotplug '
                     'port traits (attempt %d of %d); reading it again',
                     provider_uuid, attempt, retries)
            time.sleep(min(0.05 * 2 ** attempt, 1.0))
            continue
        _check(response, f'setting the traits of provider {provider_uuid}')
        summary['changed'] = True
        return summary
    raise PublishError(f'provider {provider_uuid} kept changing: gave up '
                       f'after {retries} attempts (HTTP 409 each time)')
