"""What every lane backend starts with: the language, the administrator role, the
gateway's API user with its own role and district, a location chain with an officer,
and the genders. Idempotent."""

from core.models import InteractiveUser, Language, Officer, Role, RoleRight, User, UserRole
from insuree.models import Gender
from location.models import Location, UserDistrict

# The rights the gateway's calls need (the modules' default permission codes):
# families (a policy's family and its head), insurees, policies, premiums (also
# validatePremiumCode), create premium.
API_RIGHTS = (101001, 101101, 101201, 101301, 101302)
API_ROLE = "Payment gateway"
ADMIN_SYSTEM_ROLE = 64

LOCATIONS = (
    ("R1", "Region", "R"),
    ("D1", "District", "D"),
    ("W1", "Ward", "W"),
    ("V1", "Village", "V"),
)
OFFICER_CODE = "E00001"
AUDIT_USER_ID = -1


def _admin_role() -> Role:
    """openIMIS's administrator role (all rights, no rights rows); nobody has it here."""
    role = Role.objects.filter(is_system=ADMIN_SYSTEM_ROLE, validity_to__isnull=True).first()
    return role or Role.objects.create(
        name="IMIS Administrator", is_system=ADMIN_SYSTEM_ROLE, is_blocked=False
    )


def _api_role() -> Role:
    """A role with only the rights the gateway needs: its API user is no administrator."""
    role = Role.objects.filter(name=API_ROLE, validity_to__isnull=True).first()
    if role is None:
        role = Role.objects.create(name=API_ROLE, is_system=0, is_blocked=False)
    for right in API_RIGHTS:
        RoleRight.objects.get_or_create(
            role=role,
            right_id=right,
            validity_to__isnull=True,
            defaults={"audit_user_id": AUDIT_USER_ID},
        )
    return role


def _locations() -> list[Location]:
    chain: list[Location] = []
    parent = None
    for code, name, kind in LOCATIONS:
        location = Location.objects.filter(code=code, validity_to__isnull=True).first()
        if location is None:
            location = Location.objects.create(
                code=code, name=name, type=kind, parent=parent, audit_user_id=AUDIT_USER_ID
            )
        chain.append(location)
        parent = location
    return chain


def _user(username: str, password: str, role: Role, district: Location) -> None:
    language = Language.objects.get(code="en")
    i_user = InteractiveUser.objects.filter(login_name=username, validity_to__isnull=True).first()
    if i_user is None:
        i_user = InteractiveUser(
            login_name=username, last_name="Gateway", other_names="Payment", language=language
        )
    i_user.set_password(password)
    i_user.save()
    UserRole.objects.filter(user=i_user).exclude(role=role).delete()
    UserRole.objects.get_or_create(user=i_user, role=role, validity_to__isnull=True)
    if not User.objects.filter(username=username).exists():
        User.objects.create(username=username, i_user=i_user)
    UserDistrict.objects.get_or_create(
        user=i_user,
        location=district,
        validity_to__isnull=True,
        defaults={"audit_user_id": AUDIT_USER_ID},
    )


def seed_base(username: str, password: str) -> None:
    Language.objects.get_or_create(code="en", defaults={"name": "English", "sort_order": 0})
    chain = _locations()
    district = chain[1]
    if not Officer.objects.filter(code=OFFICER_CODE, validity_to__isnull=True).exists():
        Officer.objects.create(
            code=OFFICER_CODE,
            last_name="Officer",
            other_names="Enrolment",
            location=district,
            audit_user_id=AUDIT_USER_ID,
        )
    for code, name in (("M", "Male"), ("F", "Female")):
        Gender.objects.get_or_create(code=code, defaults={"gender": name, "sort_order": 0})
    _admin_role()
    _user(username, password, _api_role(), district)


def village() -> Location:
    return Location.objects.get(code=LOCATIONS[-1][0], validity_to__isnull=True)


def officer() -> Officer:
    return Officer.objects.get(code=OFFICER_CODE, validity_to__isnull=True)
