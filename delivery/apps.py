from django.apps import AppConfig


class DeliveryConfig(AppConfig):
    name = "delivery"
    verbose_name = "Delivery"

    def ready(self) -> None:
        # Contacts reads opens and clicks only through what is registered here: it may not import delivery
        # (DESIGN.md §2, imports flow delivery -> campaigns -> contacts).
        from contacts import gdpr, segments, selectors
        from delivery.selectors import engaged_since, engagement_activity, engagement_export

        segments.register_engagement_filter(engaged_since)
        selectors.register_activity_source(engagement_activity)
        # No erase step: the rows hold a kind, a time and a campaign, nothing personal, and keep campaigns'
        # figures whole once the person is erased.
        gdpr.register_person_data("engagement", export=engagement_export)
